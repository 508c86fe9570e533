"""rag_core.enrichment without a server: search parameters, handler settings and retrieval modes are validated
before anything connects (the handler against a real index is tests/integration/test_enrichment_redis.py)."""

from __future__ import annotations

from typing import Any

import pytest

from rag_core.enrichment import (
    HybridSearchParameters, RedisVectorSearchHandler, RetrievalMode, VectorSearchParameters, search_parameters,
)
from rag_core.errors import ConfigError
from rag_core.hybrid import HybridConfig
from rag_core.store.connection import RedisConnection


UNREACHABLE = RedisConnection.from_url("redis://127.0.0.1:1/0")  # never connected to


class TestSearchParameters:
    @pytest.mark.parametrize("kwargs, match", [
        ({"top_k": 0}, "top_k"), ({"top_k": 5000}, "top_k"), ({"top_k": True}, "top_k"),
        ({"score_threshold": float("nan")}, "score_threshold"), ({"ef_runtime": 0}, "ef_runtime"),
        ({"index": "bad name"}, "Invalid index name"), ({"index": "docs__vbad"}, "Invalid index version"),
    ])
    def test_invalid_search_parameters(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            VectorSearchParameters(**{"index": "docs", **kwargs})

    @pytest.mark.parametrize("kwargs, match", [
        ({"max_batch_size": 0}, "max_batch_size"), ({"min_batch_size": 4, "max_batch_size": 2}, "max_batch_size"),
        ({"on_unavailable": "ignore"}, "on_unavailable"), ({"circuit_open_s": -1.0}, "circuit_open_s"),
        ({"reindex_wait_s": float("inf")}, "reindex_wait_s"), ({"retry": 3}, "retry"),
    ])
    def test_invalid_handler_settings(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            RedisVectorSearchHandler(UNREACHABLE, VectorSearchParameters("docs"), **kwargs)

    def test_retrieval_modes(self) -> None:
        vector = VectorSearchParameters("docs", top_k=3)
        assert search_parameters(RetrievalMode.DENSE, vector) is vector
        hybrid = search_parameters("hybrid", vector, HybridConfig(candidates=7))
        assert hybrid == HybridSearchParameters(vector, HybridConfig(candidates=7))
        assert hybrid.mode is RetrievalMode.HYBRID and hybrid.vector is vector
        assert [m.value for m in RetrievalMode] == ["dense", "hybrid"]
        with pytest.raises(ConfigError, match="retrieval must be one of dense, hybrid, got 'sparse'"):
            search_parameters("sparse", vector)
