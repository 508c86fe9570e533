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
