"""Hybrid retrieval (vector KNN + BM25, fused) through RedisVectorSearchHandler against an
index built by the real ingest pipeline (real Redis, the packaged MiniLM)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from rag_core.embeddings import EmbeddingConfig, embed_texts, load_sentence_transformer
from rag_core.enrichment import HybridSearchParameters, RedisVectorSearchHandler, VectorSearchParameters
from rag_core.hybrid import FusionConfig, HybridConfig
from rag_core.types import Chunk, Content, Embedding

# Question texts that would change a RediSearch query if typed into it as is.
HOSTILE = [
    "a|b", "*", "@title:{y}", "@text:(x) | @title:(y)", "-water", "~iron", "%pump%", "pump*", "$vector",
    "=>[KNN 1 @embedding $vector]", "=> {$weight: 100}", "(x)", "[1 2]", '"exact phrase"', "a:b;c",
    "ismissing(@title)", "@chunk_index:[-inf +inf]", "w'o\"r`d", "x\ty\nz", "' OR 1=1 --", "日本語 😀", "\u200b",
]

# Added to the shared facts: two documents about pumps, one with an exact part number.
PUMPS = [
    {"id": "valve", "title": "Pump maintenance", "text": "Part QX7719 is the replacement valve for the pump.",
     "metadata": {"region": "north"}},
    {"id": "pumps", "title": "Pumps", "text": "Centrifugal pumps move water by converting rotation into flow.",
     "metadata": {"region": "south"}},
]


@pytest.fixture(scope="module")
def docs(facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return facts + PUMPS


@pytest.fixture(scope="module")
def alias(build_index: Any, docs: list[dict[str, Any]]) -> str:
    return build_index(f"t_hybrid_{int(time.time() * 1000) % 10**9}", docs)


@pytest.fixture(scope="module")
def embed() -> Any:
    config = EmbeddingConfig()
    model = load_sentence_transformer(config)
    return lambda texts: embed_texts(model, texts, config)


def _question(embed: Any, text: str, qid: str = "q", filt: dict | None = None) -> Chunk:
    return Chunk(content=Content(text=text), id=qid, embedding=Embedding(dense_embedding=embed([text])[0].tolist()),
                 metadata={"filter": filt} if filt else {})


@pytest.fixture
def handler(redis_conn: Any, alias: str) -> Iterator[RedisVectorSearchHandler]:
    with RedisVectorSearchHandler(redis_conn, HybridSearchParameters(VectorSearchParameters(alias, top_k=5))) as h:
        yield h


class TestHybridHandler:
    def test_exact_keyword_ranks_first_with_both_scores(self, handler, embed) -> None:
        _, response = handler(_question(embed, "Which valve is QX7719?"))
        top = response["hits"][0]
        assert top["doc_id"] == "valve"
        assert top["text_score"] is not None and top["text_score"] > 0
        assert top["dense_score"] is not None and -1.0 <= top["dense_score"] <= 1.0
        assert top["text"] and "QX7719" in top["text"]
        scores = [h["score"] for h in response["hits"]]
        assert scores == sorted(scores, reverse=True)

    def test_chunks_the_words_do_not_match_have_no_text_score(self, handler, embed) -> None:
        _, response = handler(_question(embed, "waggle dance"))
        by_doc = {h["doc_id"]: h for h in response["hits"]}
        assert by_doc["bees"]["text_score"] is not None
        assert all(h["text_score"] is None for d, h in by_doc.items() if d != "bees")

    def test_one_round_trip_per_batch_two_commands_per_question(self, handler, embed) -> None:
        calls: list[int] = []
        original = handler._round_trip

        def counting(commands: list[list[Any]]) -> list[Any]:
            calls.append(len(commands))
            return original(commands)

        handler._round_trip = counting  # type: ignore[method-assign]
        questions = [_question(embed, t, f"q{i}") for i, t in enumerate(["pump valve", "moon tides", "the of"])]
        pairs = handler(questions)
        assert calls == [5]  # two per question, one for the question without a searchable word
        assert [req.id for req, _ in pairs] == ["q0", "q1", "q2"]
        assert pairs[1][1]["hits"][0]["doc_id"] == "tides"
        assert all(h["text_score"] is None for h in pairs[2][1]["hits"])  # dense only

    @pytest.mark.parametrize("text", HOSTILE)
    def test_hostile_question_text_is_only_words(self, handler, embed, docs, text: str) -> None:
        _, response = handler(_question(embed, text))
        # Dense always answers; full-text matches only where the question's words occur.
        assert 1 <= len(response["hits"]) <= 5
        words = {w.lower() for w in text.replace("_", " ").split()}
        for hit in response["hits"]:
            if hit["text_score"] is not None:
                doc = next(d for d in docs if d["id"] == hit["doc_id"])
                assert any(w.strip("'\"(){}[]|*%~-$@:;=>") in (doc["title"] + " " + doc["text"]).lower()
                           for w in words if w.strip("'\"(){}[]|*%~-$@:;=>"))

    def test_filter_applies_to_both_searches(self, redis_conn, alias, embed) -> None:
        params = HybridSearchParameters(VectorSearchParameters(alias, top_k=5))
        with RedisVectorSearchHandler(redis_conn, params) as h:
            _, response = h(_question(embed, "pump water valve", filt={"region": "south"}))
        assert response["hits"] and {x["doc_id"] for x in response["hits"]} <= {"bees", "pumps"}
        assert response["hits"][0]["doc_id"] == "pumps"

    def test_threshold_on_dense_similarity_abstains_despite_word_matches(self, redis_conn, alias, embed) -> None:
        params = HybridSearchParameters(VectorSearchParameters(alias, top_k=5, score_threshold=0.99))
        with RedisVectorSearchHandler(redis_conn, params) as h:
            _, response = h(_question(embed, "water"))
        assert response["hits"] == []

    def test_dense_weight_one_equals_dense_ranking(self, redis_conn, alias, embed) -> None:
        question = _question(embed, "Why does iron rust in water?")
        dense = VectorSearchParameters(alias, top_k=5)
        hybrid = HybridSearchParameters(dense, HybridConfig(fusion=FusionConfig(dense_weight=1.0)))
        with RedisVectorSearchHandler(redis_conn, dense) as d, RedisVectorSearchHandler(redis_conn, hybrid) as h:
            dense_ids = [x["chunk_id"] for x in d(question)[1]["hits"]]
            hybrid_ids = [x["chunk_id"] for x in h(question)[1]["hits"]]
        assert hybrid_ids == dense_ids

    def test_cache_key_depends_on_question_text(self, handler, embed) -> None:
        a = _question(embed, "pump valve")
        b = Chunk(content=Content(text="other words"), id="q", embedding=a.embedding)
        assert handler.get_cache_key(a) != handler.get_cache_key(b)
