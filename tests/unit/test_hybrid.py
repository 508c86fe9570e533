"""rag_core.hybrid: query-text tokenizing, the full-text query, and rank fusion (pure)."""

from __future__ import annotations

import re

import pytest

from rag_core.errors import ConfigError
from rag_core.hybrid import (
    STOPWORDS, FusionConfig, HybridConfig, TextSearchConfig, convex_fusion, fuse, fuse_hits, query_terms,
    reciprocal_rank_fusion, text_query, text_search_args,
)

# Question texts that would change a RediSearch query if typed into it as is.
HOSTILE = [
    "a|b", "*", "@title:{y}", "@text:(x) | @title:(y)", "}", "{", "\\", "-a", "a-b", "~a", "%fuzzy%", "prefix*",
    "$vector", "=>[KNN 1 @embedding $vector]", "=> {$weight: 100}", "(x)", "[1 2]", '"exact phrase"', "'s'",
    "a:b", "a;b", "ismissing(@title)", "@chunk_index:[-inf +inf]", "w'o\"r`d", "x\ty\nz\r", "\\| \\*",
    "' OR 1=1 --", "héllo wörld", "日本語", "😀", "a\u00a0b", "\u200b", "ab\u2028c", "_under_score_",
]
# What may appear in the built query: letters, digits, _, the one disjunction we build, and escapes.
TERM = r"(?:[^\W]|\\[^\w\s])+"


class TestQueryTerms:
    def test_words_lowercased_in_order_without_repeats(self) -> None:
        assert query_terms("Vitamin D deficiency, VITAMIN d levels!") == ["vitamin", "d", "deficiency", "levels"]

    def test_stopwords_and_punctuation_dropped(self) -> None:
        assert query_terms("The role of IL-6 in the (acute) phase.") == ["role", "il", "6", "acute", "phase"]
        assert query_terms("the, of; and? is.") == []
        assert {"the", "not", "with"} <= STOPWORDS

    def test_min_chars_and_max_terms(self) -> None:
        assert query_terms("a b cc dd", min_chars=2) == ["cc", "dd"]
        assert query_terms(" ".join(f"w{i}" for i in range(100)), max_terms=3) == ["w0", "w1", "w2"]

    @pytest.mark.parametrize("text", HOSTILE)
    def test_hostile_text_yields_only_word_tokens(self, text: str) -> None:
        for term in query_terms(text):
            assert re.fullmatch(r"[^\W]+", term), term

    def test_not_a_string(self) -> None:
        with pytest.raises(ConfigError, match="must be a string"):
            query_terms(None)  # type: ignore[arg-type]


class TestTextQuery:
    def test_text_and_title_with_the_schema_weights(self) -> None:
        assert text_query(["il", "6"], TextSearchConfig()) == "@text|title:(il|6)"

    def test_text_only(self) -> None:
        assert text_query(["x"], TextSearchConfig(fields=("text",))) == "@text:(x)"

    def test_terms_are_escaped_even_if_not_from_query_terms(self) -> None:
        assert text_query(["a|b", "$v"], TextSearchConfig()) == "@text|title:(a\\|b|\\$v)"

    def test_no_terms_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="at least one term"):
            text_query([], TextSearchConfig())

    @pytest.mark.parametrize("text", HOSTILE)
    def test_hostile_question_builds_a_plain_disjunction(self, text: str) -> None:
        args = text_search_args(text, "kb__v1", ["doc_id"], 10, TextSearchConfig())
        if args is None:
            assert query_terms(text) == []
            return
        query = args[1]
        assert re.fullmatch(rf"@text\|title:\({TERM}(?:\|{TERM})*\)", query), query

    def test_filter_is_intersected(self) -> None:
        args = text_search_args("bees", "kb__v1", ["doc_id", "text"], 7, TextSearchConfig(), "@md_lang:{en}")
        assert args == ["kb__v1", "(@text|title:(bees)) @md_lang:{en}", "SCORER", "BM25STD", "WITHSCORES",
                        "RETURN", 2, "doc_id", "text", "LIMIT", 0, 7, "DIALECT", 2]

    @pytest.mark.parametrize("kwargs, match", [
        ({"scorer": "TFIDF"}, "scorer"), ({"fields": ()}, "fields"), ({"fields": ("text", "md_x")}, "fields"),
        ({"fields": "text"}, "fields"), ({"fields": ("text", "text")}, "fields"), ({"max_terms": 0}, "max_terms"),
        ({"min_chars": 0}, "min_chars"),
    ])
    def test_invalid_config(self, kwargs: dict, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            TextSearchConfig(**kwargs)


class TestFusion:
    def test_rrf_hand_computed(self) -> None:
        fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], [1.0, 1.0], k=10)
        assert fused["a"] == pytest.approx(1 / 11 + 1 / 12)
        assert fused["b"] == pytest.approx(1 / 12)
        assert fused["c"] == pytest.approx(1 / 13 + 1 / 11)

    def test_rrf_weights(self) -> None:
        fused = reciprocal_rank_fusion([["a"], ["b"]], [0.75, 0.25], k=0)
        assert fused == {"a": 0.75, "b": 0.25}

    def test_convex_min_max_normalises_each_list(self) -> None:
        fused = convex_fusion([{"a": 0.9, "b": 0.7, "c": 0.5}, {"c": 30.0, "d": 10.0}], [0.6, 0.4])
        assert fused == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.4, "d": 0.0})

    def test_convex_single_item_list_scores_one(self) -> None:
        assert convex_fusion([{"a": 0.2}], [1.0]) == {"a": 1.0}

    def test_fuse_orders_best_first_and_breaks_ties_by_dense_rank(self) -> None:
        # a and b tie on RRF (each is first in one list); a is ranked by dense, so it wins.
        out = fuse([("a", 0.9)], [("b", 5.0)], FusionConfig(method="rrf", rrf_k=1, dense_weight=0.5))
        assert [i for i, _ in out] == ["a", "b"]
        assert out[0][1] == out[1][1]

    def test_fuse_agreement_beats_a_single_list(self) -> None:
        dense = [("x", 0.9), ("both", 0.85), ("z", 0.1)]
        text = [("y", 12.0), ("both", 11.0), ("w", 1.0)]
        for config in (FusionConfig(method="rrf"), FusionConfig(method="convex", dense_weight=0.5)):
            assert fuse(dense, text, config)[0][0] == "both"

    def test_defaults_are_the_tuned_ones(self) -> None:
        config = HybridConfig()
        assert (config.fusion.method, config.fusion.dense_weight, config.candidates) == ("convex", 0.55, 100)
        assert (config.text.scorer, config.text.fields) == ("BM25STD", ("text", "title"))

    def test_dense_weight_one_is_the_dense_ranking(self) -> None:
        dense = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
        text = [("c", 9.0), ("b", 1.0)]
        for method in ("rrf", "convex"):
            out = fuse(dense, text, FusionConfig(method=method, dense_weight=1.0))
            assert [i for i, _ in out] == ["a", "b", "c"]

    def test_fuse_hits_keeps_fields_and_both_scores(self) -> None:
        dense = [{"chunk_id": "d#0", "doc_id": "d", "score": 0.7, "text": "dense copy"}]
        text = [{"chunk_id": "d#0", "doc_id": "d", "score": 4.2, "text": "text copy"},
                {"chunk_id": "e#1", "doc_id": "e", "score": 3.0, "text": "only text"}]
        out = fuse_hits(dense, text, FusionConfig(method="rrf", rrf_k=60), top_k=5)
        assert [h["chunk_id"] for h in out] == ["d#0", "e#1"]
        assert out[0]["text"] == "dense copy" and out[0]["dense_score"] == 0.7 and out[0]["text_score"] == 4.2
        assert out[1]["dense_score"] is None and out[1]["text_score"] == 3.0
        assert fuse_hits(dense, text, FusionConfig(), top_k=1)[0]["chunk_id"] == "d#0"

    @pytest.mark.parametrize("kwargs, match", [
        ({"method": "max"}, "method"), ({"rrf_k": -1}, "rrf_k"), ({"dense_weight": 1.5}, "dense_weight"),
        ({"dense_weight": True}, "dense_weight"),
    ])
    def test_invalid_fusion_config(self, kwargs: dict, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            FusionConfig(**kwargs)

    def test_invalid_hybrid_config(self) -> None:
        with pytest.raises(ConfigError, match="candidates"):
            HybridConfig(candidates=0)
        with pytest.raises(ConfigError, match="TextSearchConfig"):
            HybridConfig(text=FusionConfig())  # type: ignore[arg-type]
