"""rag_core/sample_data: the demo corpus and questions are small, well formed and consistent."""

from __future__ import annotations

import json
from importlib import resources


def sample(name: str) -> list[dict]:
    text = (resources.files("rag_core") / "sample_data" / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class TestSampleData:
    def test_corpus_is_small_and_well_formed(self):
        docs = sample("docs.jsonl")
        assert 12 <= len(docs) <= 20 and len({d["id"] for d in docs}) == len(docs)
        assert all(d["title"] and 200 < len(d["text"]) < 1500 for d in docs)

    def test_questions_point_at_real_documents(self):
        ids = {d["id"] for d in sample("docs.jsonl")}
        questions = sample("questions.jsonl")
        assert 5 <= len(questions) <= 8
        answerable = [q for q in questions if q["answerable"]]
        assert len(answerable) == len(questions) - 1  # exactly one the corpus cannot answer
        assert all(q["relevant_doc_ids"] and set(q["relevant_doc_ids"]) <= ids for q in answerable)
