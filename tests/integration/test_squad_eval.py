"""`beam-rag eval --dataset squad2` on a small slice: 12 questions of one article (half of them
unanswerable), that article's 24 paragraphs built by the real ingest pipeline and answered by the
real query pipeline with the packaged SmolLM2, kept quick with 16 new tokens and 3 passages
(real Redis from the session fixture)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pipelines import cli
from rag_core.store.catalog import IndexCatalog
from rag_core.store.connection import RedisConnection

SQUAD_FILE = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "squad2-dev" / "squad2_dev_subset.json"
# 1973_oil_crisis: 24 paragraphs, 255 questions; every 22nd is 12 questions, 6 of them answerable.
SLICE = ["--dataset", "squad2", "--data-file", str(SQUAD_FILE), "--article", "1973_oil_crisis", "--articles-only",
         "--every", "22"]
RATES = ("exact_match", "f1", "has_answer_exact_match", "has_answer_f1", "no_answer_abstention_rate",
         "false_abstention_rate", "hit@1", "hit@5")


def _run(argv: list[str]) -> tuple[int, dict[str, Any], str]:
    """``beam-rag ARGV`` in-process: exit code, the JSON object on stdout's last line, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    lines = out.getvalue().strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 else {}), err.getvalue()


@pytest.fixture(scope="module")
def squad_run(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out_dir = tmp_path_factory.mktemp("squad-eval")
    code, summary, err = _run(["eval", *SLICE, "--redis-url", redis_url, "--output-dir", str(out_dir),
                               "--", "--max-new-tokens", "16", "--top-k", "3"])
    assert code == 0, err
    return summary, err


class TestSquadEvalSlice:
    def test_counts_reconcile(self, squad_run: tuple[dict[str, Any], str]) -> None:
        summary, _ = squad_run
        assert summary["questions"] == 12 and summary["answerable"] == 6
        assert summary["answerable"] + summary["unanswerable"] == summary["questions"]
        assert summary["answered"] + summary["dead_lettered"] == summary["questions"]
        assert summary["abstained"] <= summary["answered"]
        assert summary["paragraphs"] == summary["documents_indexed"] == 24 and summary["articles"] == 1

    def test_metrics_exist_and_are_in_range(self, squad_run: tuple[dict[str, Any], str]) -> None:
        summary, _ = squad_run
        for name in RATES:
            assert 0.0 <= summary[name] <= 1.0, name
        assert summary["hit@1"] <= summary["hit@5"]
        # 24 paragraphs of one article: the gold paragraph is usually among the 3 sources retrieved.
        assert summary["hit@5"] >= 0.5
        for name in ("attempted_f1", "attempted_exact_match", "answer_contains_gold"):
            assert summary[name] is None or 0.0 <= summary[name] <= 1.0, name
        assert summary["mean_answer_words"] is None or summary["mean_answer_words"] > 0
        assert summary["model"] and summary["query_flags"] == "--max-new-tokens 16 --top-k 3"
        assert summary["query_s"] > 0 and summary["questions_per_s"] > 0 and summary["build_s"] > 0

    def test_outputs_written(self, squad_run: tuple[dict[str, Any], str]) -> None:
        summary, err = squad_run
        report = Path(summary["report"]).read_text(encoding="utf-8")
        assert "| has_answer_f1 |" in report and "| dead_lettered |" in report and "squad2.png" in report
        assert Path(summary["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        runs = json.loads(Path(summary["runs"]).read_text(encoding="utf-8"))
        assert runs["summary"]["f1"] == summary["f1"] and len(runs["questions"]) == 12
        row = runs["questions"][0]
        assert {"id", "gold_answers", "answer", "f1", "abstained", "hit@1", "hit@5"} <= set(row)
        assert sum(r["returned"] for r in runs["questions"]) == summary["answered"]
        answerable = [r for r in runs["questions"] if r["answerable"]]
        assert summary["attempted"] == sum(r["returned"] and not r["abstained"] for r in answerable)
        assert "indexing 24 paragraphs" in err and "answering 12 questions" in err
        # Both stages' progress (plain lines: stderr is not a terminal here).
        assert "beam-rag ingest: 100% 24/24" in err and "beam-rag query: 100% 12/12" in err, err[-2000:]

    def test_built_index_is_dropped(self, squad_run: tuple[dict[str, Any], str], redis_conn: RedisConnection) -> None:
        summary, _ = squad_run
        assert summary["index"] is None
        client = redis_conn.client()
        try:
            assert not [a for a in IndexCatalog.list_aliases(client) if a.startswith("squad2-eval-")]
        finally:
            client.close()


class TestSquadEvalRefusals:
    def test_query_flags_the_eval_sets_itself(self, redis_url: str) -> None:
        code, _, err = _run(["eval", *SLICE, "--redis-url", redis_url, "--", "--output", "x.jsonl"])
        assert code == cli.EXIT_ERROR and "--output is set by beam-rag eval --dataset squad2" in err

    def test_unknown_article(self, redis_url: str) -> None:
        code, _, err = _run(["eval", "--dataset", "squad2", "--data-file", str(SQUAD_FILE), "--article", "Atlantis",
                             "--redis-url", redis_url])
        assert code == cli.EXIT_ERROR and "--article Atlantis is not in the file" in err

    def test_missing_data_file(self, tmp_path: Path) -> None:
        code, _, err = _run(["eval", "--dataset", "squad2", "--data-file", str(tmp_path / "none.json")])
        assert code == cli.EXIT_ERROR and "SQuAD file not found" in err
