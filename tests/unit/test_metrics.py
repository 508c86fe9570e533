import math
import os
from pathlib import Path

import pytest

from rag_core.evaluation.metrics import evaluate, mrr_at_k, ndcg_at_k, recall_at_k
from rag_core.evaluation.scifact import load_scifact, parse_sentence_list

SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "scifact"


class TestHandComputed:
    def test_ndcg_perfect_and_empty(self):
        assert ndcg_at_k(["a", "b"], {"a", "b"}, 10) == 1.0
        assert ndcg_at_k(["x", "y"], {"a"}, 10) == 0.0

    def test_ndcg_two_relevant_at_ranks_1_and_3(self):
        # DCG = 1/log2(2) + 1/log2(4) = 1.5 ; IDCG = 1 + 1/log2(3)
        expected = 1.5 / (1 + 1 / math.log2(3))
        assert ndcg_at_k(["a", "x", "b"], {"a", "b"}, 10) == pytest.approx(expected)

    def test_ndcg_cut_at_k(self):
        assert ndcg_at_k(["x", "a"], {"a"}, 1) == 0.0

    def test_recall_and_mrr(self):
        assert recall_at_k(["a", "x", "b"], {"a", "b", "c", "d"}, 2) == 0.25
        assert mrr_at_k(["x", "y", "a"], {"a"}, 10) == pytest.approx(1 / 3)
        assert mrr_at_k(["x"] * 10 + ["a"], {"a"}, 10) == 0.0

    def test_evaluate_means_and_best_chunk_dedupe(self):
        run = {"q1": ["a", "a", "b"], "q2": ["z"]}
        qrels = {"q1": {"b"}, "q2": {"c"}, "q3": set()}
        out = evaluate(run, qrels, ks=(10,))
        assert out["queries"] == 2
        assert out["recall@10"] == 0.5  # q1 finds b, q2 misses
        assert out["mrr@10"] == 0.25    # q1: b at rank 2 once duplicates collapse


def test_parse_numpy_sentence_list():
    assert parse_sentence_list("['A b.'\n 'It\\'s \"c\".']") == ["A b.", "It's \"c\"."]


def test_scifact_loader_counts():
    data = load_scifact(SCIFACT, "test")
    assert len(data.corpus) == 5183
    assert len(data.queries) == 300
    assert sum(len(v) for v in data.qrels.values()) == 339
    title, abstract = data.corpus["4983"]
    assert title.startswith("Microstructural development") and abstract.startswith("Alterations of")


class TestReport:
    def test_recall_curve_dedupes_chunks_into_documents(self):
        from rag_core.evaluation.report import recall_curve

        run = {"q1": ["a", "a", "a", "b"], "q2": ["x", "c"]}
        qrels = {"q1": {"b"}, "q2": {"c", "d"}, "q3": set()}
        assert recall_curve(run, qrels, ks=(1, 2, 10)) == {1: 0.0, 2: 0.75, 10: 0.75}

    def test_overlap_at_k_is_ann_recall_against_exact(self):
        from rag_core.evaluation.report import overlap_at_k

        exact = {"q1": ["a", "b", "c"], "q2": ["d", "e", "f"]}
        approx = {"q1": ["a", "c", "z"], "q2": ["d", "e", "f"]}
        assert overlap_at_k(approx, exact, 3) == pytest.approx((2 / 3 + 1) / 2)
        assert overlap_at_k({}, exact, 2) == 0.0

    def test_markdown_report_has_every_mode_anchor_and_curve(self):
        from rag_core.evaluation.report import SCIFACT_ANCHORS, markdown_report

        text = markdown_report({"dataset": "scifact", "split": "test", "index": None},
                               {"dense": {"ndcg@10": 0.6451, "queries_per_s": 120.5}, "hybrid": {"ndcg@10": 0.7}},
                               {"dense": {10: 0.8}, "hybrid": {10: 0.9}}, SCIFACT_ANCHORS, "recall.png")
        assert "| dense | 0.645 |" in text and "| hybrid | 0.700 |" in text
        assert "| BM25 flat (BEIR/Pyserini) | 0.679 |" in text
        assert "| hybrid | 0.900 |" in text and "![recall@k](recall.png)" in text
        assert "**index**" not in text  # None values are left out

    def test_plot_is_a_png(self, tmp_path):
        from rag_core.evaluation.report import plot_recall_curves

        path = plot_recall_curves({"dense": {1: 0.5, 10: 0.8}, "hybrid": {1: 0.6, 10: 0.9}},
                                  tmp_path / "r.png", "t")
        assert path.read_bytes()[:4] == b"\x89PNG"


class TestEvalSlice:
    CORPUS = {str(i): (f"t{i}", f"abstract {i}") for i in range(10)}
    QUERIES = {"q1": "one", "q2": "two", "q3": "three"}
    QRELS = {"q1": {"7"}, "q2": set(), "q3": {"2", "9", "404"}}

    def test_relevant_documents_first_then_corpus_order(self):
        from pipelines.evaluate import select

        s = select(self.CORPUS, self.QUERIES, self.QRELS, limit_docs=5, limit_queries=2)
        assert list(s.queries) == ["q1", "q3"]  # q2 has no relevant document
        assert set(s.corpus) == {"7", "2", "9", "0", "1"}
        assert s.qrels == {"q1": {"7"}, "q3": {"2", "9"}}  # 404 is not in the corpus

    def test_no_limits_keeps_everything_with_relevance(self):
        from pipelines.evaluate import select

        s = select(self.CORPUS, self.QUERIES, self.QRELS)
        assert len(s.corpus) == 10 and list(s.queries) == ["q1", "q3"]

    def test_limit_below_the_relevant_documents_is_refused(self):
        from pipelines.evaluate import select
        from rag_core.errors import ConfigError

        with pytest.raises(ConfigError, match="--limit-docs 2 is smaller than the 3 relevant"):
            select(self.CORPUS, self.QUERIES, self.QRELS, limit_docs=2)
