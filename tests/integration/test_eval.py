"""`beam-rag eval` on a SciFact slice: 200 documents holding the relevant ones of 20
test claims, built by the real ingest pipeline and searched through the Enrichment
step, dense and hybrid (real Redis, the packaged MiniLM)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from pipelines import cli
from rag_core.store.catalog import IndexCatalog
from rag_core.store.connection import RedisConnection

SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "scifact"
SLICE = ["--dataset", "scifact", "--data-dir", str(SCIFACT), "--limit-docs", "200", "--limit-queries", "20"]
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def _run(argv: list[str]) -> tuple[int, dict[str, Any], str]:
    """``beam-rag ARGV`` in-process: exit code, the JSON object on stdout's last line, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    lines = out.getvalue().strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 else {}), err.getvalue()


@pytest.fixture(scope="module")
def hybrid_run(redis_url: str, redis_conn: RedisConnection, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    out_dir = tmp_path_factory.mktemp("eval")
    code, summary, err = _run(["eval", *SLICE, "--retrieval", "hybrid", "--redis-url", redis_url,
                               "--output-dir", str(out_dir), "--keep-index"])
    assert code == 0, err
    yield summary
    client = redis_conn.client()
    try:
        IndexCatalog(client, summary["index"].split("__")[0]).drop()
    finally:
        client.close()


class TestEvalSlice:
    def test_counts_and_last_line_metrics(self, hybrid_run: dict[str, Any]) -> None:
        assert hybrid_run["queries"] == 20 and hybrid_run["docs"] == 200
        assert hybrid_run["retrieval"] == "hybrid" and hybrid_run["index_type"] == "flat"
        assert hybrid_run["chunks"] >= 200

    @pytest.mark.parametrize("mode", ["hybrid", "dense"])
    def test_metrics_are_sane(self, hybrid_run: dict[str, Any], mode: str) -> None:
        metrics = hybrid_run if mode == "hybrid" else hybrid_run["compare"]["dense"]
        for name in METRICS:
            assert 0.0 <= metrics[name] <= 1.0, name
        # 200 documents, the 20 claims' relevant ones among them: both modes find most.
        assert metrics["ndcg@10"] >= 0.7
        assert metrics["recall@100"] >= metrics["recall@10"] >= 0.8
        assert metrics["queries_short_of_depth"] == 0
        assert metrics["queries_per_s"] > 0

    def test_report_and_plot_written(self, hybrid_run: dict[str, Any]) -> None:
        report = Path(hybrid_run["report"])
        plot = Path(hybrid_run["plot"])
        text = report.read_text()
        assert "| hybrid |" in text and "| dense |" in text and "recall.png" in text
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
        runs = json.loads((report.parent / "runs.json").read_text())
        assert set(runs) == {"dense", "hybrid"} and len(runs["dense"]) == 20

    def test_reuse_index_dense_only_reproduces_the_dense_numbers(self, hybrid_run: dict[str, Any], redis_url: str,
                                                                 tmp_path: Path) -> None:
        alias = hybrid_run["index"].split("__")[0]
        code, summary, _ = _run(["eval", *SLICE, "--reuse-index", alias, "--no-compare",
                                         "--redis-url", redis_url, "--output-dir", str(tmp_path)])
        assert code == 0
        assert summary["compare"] == {} and "ingest_s" not in summary
        for name in METRICS:
            assert summary[name] == hybrid_run["compare"]["dense"][name]

    def test_slice_too_small_for_the_relevant_documents(self, redis_url: str) -> None:
        code, _, err = _run(["eval", "--dataset", "scifact", "--data-dir", str(SCIFACT), "--limit-docs", "3",
                                     "--limit-queries", "20", "--redis-url", redis_url])
        assert code == cli.EXIT_ERROR
        assert "--limit-docs 3 is smaller than the" in err

    def test_missing_data_dir(self, tmp_path: Path) -> None:
        code, _, err = _run(["eval", "--dataset", "scifact", "--data-dir", str(tmp_path)])
        assert code == cli.EXIT_ERROR and "SciFact file not found" in err


def test_query_pipeline_hybrid_retrieval_only(hybrid_run: dict[str, Any], redis_url: str, tmp_path: Path) -> None:
    """`beam-rag query --retrieval hybrid --retrieval-only` on the eval's index: fused, ranked sources."""
    from pipelines import query
    from rag_core.evaluation.scifact import load_scifact

    data = load_scifact(SCIFACT, "test")
    claims = [(q, data.queries[q]) for q in list(runs_queries(hybrid_run))[:5]]
    questions = tmp_path / "claims.jsonl"
    questions.write_text("".join(json.dumps({"id": q, "question": t}) + "\n" for q, t in claims))
    output = tmp_path / "answers.jsonl"
    summary = query.run(["--input", str(questions), "--output", str(output), "--index",
                         hybrid_run["index"].split("__")[0], "--retrieval", "hybrid", "--retrieval-only",
                         "--top-k", "5", "--redis-url", redis_url])
    assert summary["reconciled"] and summary["questions_answered"] == 5
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    hit_at_5 = 0
    for row in rows:
        scores = [s["score"] for s in row["sources"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)  # convex fusion of min-max normalised scores
        hit_at_5 += any(s["doc_id"] in data.qrels[row["id"]] for s in row["sources"])
    assert hit_at_5 >= 4


def runs_queries(summary: dict[str, Any]) -> list[str]:
    return list(json.loads((Path(summary["report"]).parent / "runs.json").read_text())["hybrid"])
