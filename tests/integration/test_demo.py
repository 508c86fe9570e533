"""``beam-rag demo``: what a new user runs first (``make demo``), end to end."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from pipelines.cli import main
from rag_core.store.catalog import IndexCatalog


def sample(name: str) -> list[dict]:
    text = (resources.files("rag_core") / "sample_data" / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_demo_builds_the_sample_index_and_answers_with_sources(capsys, tmp_path, redis_url, redis_client,
                                                               index_name):
    answers = tmp_path / "answers.jsonl"
    code = main(["demo", "--redis-url", redis_url, "--index", index_name, "--output", str(answers)])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0
    docs, questions = sample("docs.jsonl"), sample("questions.jsonl")
    # Progress for both stages reaches stderr (plain lines: this stderr is not a terminal).
    assert f"beam-rag ingest: 100% {len(docs)}/{len(docs)}" in captured.err, captured.err[-2000:]
    assert f"beam-rag query: 100% {len(questions)}/{len(questions)}" in captured.err, captured.err[-2000:]
    info = IndexCatalog(redis_client, index_name).info()
    assert info["num_docs"] == len(docs) and info["documents"] == len(docs)

    # Every question is printed, in file order, with an answer and its ranked sources.
    positions = [out.index(q["question"]) for q in questions]
    assert positions == sorted(positions)
    assert out.count("Answer:") == len(questions)
    titles = {d["id"]: d["title"] for d in docs}
    rows = {r["id"]: r for r in map(json.loads, answers.read_text().splitlines())}
    for q in questions:
        block = out[out.index(q["question"]):]
        block = block[:block.find("\n\n")] if "\n\n" in block else block
        if q["answerable"]:
            # The document that answers it is retrieved first, and shown with its score.
            top = rows[q["id"]]["sources"][0]
            assert top["doc_id"] in q["relevant_doc_ids"]
            assert re.search(rf"Sources: \[1\] {re.escape(titles[top['doc_id']])}  \(score [01]\.\d\d(, cited)?\)", block)
        else:  # nothing in the corpus is about it: no sources, or the model says it cannot tell
            assert "Sources: none similar enough" in block or "know" in block.lower()
