"""Redis vector search as a Beam ``EnrichmentSourceHandler``, shaped like Beam's
``apache_beam/ml/rag/enrichment/milvus_search.py``.

Use it through ``apache_beam.transforms.enrichment.Enrichment``::

    handler = RedisVectorSearchHandler(RedisSearchConfig(connection=conn, index="docs", top_k=5))
    enriched = questions | Enrichment(handler, join_fn=join_hits)

A request is a Beam ``Chunk`` whose ``embedding.dense_embedding`` is the question
vector (``content.text`` the question, ``id`` its id, ``metadata["filter"]`` an
optional filter object, see :mod:`rag_core.filters`). :func:`join_hits` returns a
copy of the chunk with ``metadata["enrichment_data"]`` = the hits, best first::

    {"chunk_id", "doc_id", "title", "text", "score", "chunk_index"}

and ``metadata["retrieval"]`` = ``{"index": <version searched>, "latency_ms": ...}``.
``score`` is the cosine similarity (``1 - distance``) for cosine and inner-product
indexes, and ``-distance`` for L2 indexes (higher is always better).

Lifecycle: ``__enter__`` opens the handler's one client and reads the index's
catalog record once (model, dimension, metadata field kinds, algorithm), pinning
the version the alias serves at that moment, so every question of a run is
answered from one version. ``__call__`` sends all KNN queries of a batch in one
redis-py pipeline (the vector travels as a query parameter, never in the query
text) behind an ``FT.INFO`` probe (a batch waits, bounded, while RediSearch re-indexes
after a restart, instead of silently searching half an index), and retries connection
errors with bounded backoff before raising :class:`~rag_core.errors.RedisUnavailableError`
(or, with ``on_unavailable="report"``, answering each request with the error for the
pipeline to dead-letter). ``__exit__`` closes the client.

Beam runs ``__call__`` in a worker thread where Beam metrics are not recorded, so
the latency travels with the response and the pipeline records it after the join.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence, Union, cast

import numpy as np
from apache_beam.transforms.enrichment import EnrichmentSourceHandler

from rag_core.errors import ConfigError, IndexNotFoundError, ModelMismatchError, RedisUnavailableError
from rag_core.filters import build_filter, field_kinds
from rag_core.hybrid import HybridConfig, fuse_hits, text_search_args
from rag_core.store.catalog import IndexCatalog, VersionRecord, ft_info
from rag_core.store.connection import RedisConnection
from rag_core.store.schema import FieldKind, IndexLayout, validate_index_name
from rag_core.types import Chunk

__all__ = [
    "ENRICHMENT_KEY",
    "ERROR_KEY",
    "RETRIEVAL_KEY",
    "FILTER_KEY",
    "RETRIEVAL_MODES",
    "IndexTarget",
    "RedisSearchConfig",
    "RedisVectorSearchHandler",
    "SearchResponse",
    "dense_search_args",
    "hybrid_search_args",
    "join_hits",
    "parse_hybrid_replies",
    "parse_search_reply",
]

_LOG = logging.getLogger(__name__)

ENRICHMENT_KEY = "enrichment_data"  # Beam's convention (milvus_search.join_fn)
RETRIEVAL_KEY = "retrieval"
FILTER_KEY = "filter"
VECTOR_FIELD = "embedding"
DISTANCE_FIELD = "vector_distance"
_HIT_FIELDS = ("chunk_id", "doc_id", "title", "chunk_index")
MAX_TOP_K = 1000
ON_UNAVAILABLE = ("raise", "report")
# Set in a response by on_unavailable="report" when the batch's search failed.
ERROR_KEY = "error"
# HNSW EF_RUNTIME used when none is asked for: at least this (and 2 * top_k), even when
# the index's stored default is lower. Redis' default of 10 misses the true nearest
# neighbour even in small indexes (measured: 56 chunks, 4 facts among 52 look-alike
# notes, EF_RUNTIME 10 and 16 miss, 20+ find it).
MIN_EF_RUNTIME = 64

Hit = dict[str, Any]
# The response of one request: the hits (best first), the index searched, the latency.
SearchResponse = dict[str, Any]


@dataclass(frozen=True)
class RedisSearchConfig:
    """How to search one knowledge base.

    Args:
        connection: where Redis is.
        index: the alias users type (``docs``), or a pinned version (``docs__v2026...``).
        top_k: passages per question (1..1000).
        score_threshold: drop hits scoring below this (cosine similarity). In hybrid mode it
            applies to the dense candidates before fusion, and a question none of whose
            dense candidates passes it gets no hits (full-text matches alone never count).
        ef_runtime: HNSW ``EF_RUNTIME`` for these queries (ignored for FLAT indexes);
            None uses the index's default raised to at least ``max(MIN_EF_RUNTIME, 2 * top_k)``.
        return_text: fetch chunk text (False for retrieval metrics that need only ids).
        retrieval: the query mode: ``dense`` (KNN over the embedding) or ``hybrid``
            (KNN and BM25 over ``text``/``title``, fused; ``score`` is then the fused
            score and each hit also has ``dense_score`` and ``text_score``).
        hybrid: the BM25 query, fusion and candidate depth of hybrid mode.
        expected_embedding: the embedding settings of the question vectors
            (``model``, ``dimension``, ``backend_family``); any key present in both
            this and the index's record must match, else ``ModelMismatchError``.
        max_retries / backoff_s / max_backoff_s: bounded exponential backoff on
            connection errors and timeouts.
        min_batch_size / max_batch_size: Beam ``BatchElements`` bounds: questions
            per Redis round trip.
        on_unavailable: what a batch does when Redis stays unreachable through every
            retry. ``"raise"`` (in-process callers): :class:`RedisUnavailableError`.
            ``"report"`` (batch pipelines, which must not lose the other questions):
            each request gets no hits and ``"error"`` = the reason, for the pipeline to
            dead-letter; while Redis is known down (within ``circuit_open_s`` of the last
            failure) later batches try once, without the backoff, so a dead server costs
            one connection attempt per batch rather than the whole retry budget.
        circuit_open_s: how long a failure after all retries keeps the fast path on.
        reindex_wait_s: while RediSearch re-indexes (e.g. after a restart), wait up to
            this long before searching: a search during the re-index silently misses
            documents. Past it the batch fails as unavailable (dead-lettered under
            ``"report"``).
    """

    connection: RedisConnection
    index: str
    top_k: int = 5
    score_threshold: float | None = None
    ef_runtime: int | None = None
    return_text: bool = True
    retrieval: str = "dense"
    hybrid: HybridConfig = HybridConfig()
    expected_embedding: Mapping[str, Any] | None = field(default=None, hash=False)
    max_retries: int = 5
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    min_batch_size: int = 1
    max_batch_size: int = 32
    on_unavailable: str = "raise"
    circuit_open_s: float = 30.0
    reindex_wait_s: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.connection, RedisConnection):
            raise ConfigError("connection must be a RedisConnection (use RedisConnection.from_url)")
        IndexTarget.parse(self.index)
        _positive_int("top_k", self.top_k)
        if self.top_k > MAX_TOP_K:
            raise ConfigError(f"top_k must be at most {MAX_TOP_K}, got {self.top_k}")
        if self.score_threshold is not None and (
                isinstance(self.score_threshold, bool) or not isinstance(self.score_threshold, (int, float))
                or not math.isfinite(self.score_threshold)):
            raise ConfigError(f"score_threshold must be a finite number, got {self.score_threshold!r}")
        if self.ef_runtime is not None:
            _positive_int("ef_runtime", self.ef_runtime)
        if not isinstance(self.hybrid, HybridConfig):
            raise ConfigError("hybrid must be a rag_core.hybrid.HybridConfig")
        if self.retrieval not in RETRIEVAL_MODES:
            raise ConfigError(
                f"retrieval must be one of {', '.join(sorted(RETRIEVAL_MODES))}, got {self.retrieval!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if not self.backoff_s > 0 or self.max_backoff_s < self.backoff_s:
            raise ConfigError("backoff_s must be > 0 and max_backoff_s >= backoff_s")
        _positive_int("min_batch_size", self.min_batch_size)
        _positive_int("max_batch_size", self.max_batch_size)
        if self.max_batch_size < self.min_batch_size:
            raise ConfigError("max_batch_size must be >= min_batch_size")
        if self.on_unavailable not in ON_UNAVAILABLE:
            raise ConfigError(
                f"on_unavailable must be one of {', '.join(ON_UNAVAILABLE)}, got {self.on_unavailable!r}")
        for name in ("circuit_open_s", "reindex_wait_s"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value < 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")

    def worst_case_seconds(self) -> float:
        """An upper bound on one batch's time when Redis is down: a timeout for
        ``Enrichment(timeout=...)`` that never cuts the handler's own retries short."""
        sleeps, delay = 0.0, self.backoff_s
        for _ in range(self.max_retries):
            sleeps += delay
            delay = min(delay * 2, self.max_backoff_s)
        per_try = self.connection.connect_timeout + self.connection.socket_timeout
        return sleeps + (self.max_retries + 1) * per_try + 5.0


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class IndexTarget:
    """An alias, optionally pinned to one of its versions."""

    alias: str
    version: str | None = None

    @classmethod
    def parse(cls, name: str) -> "IndexTarget":
        """``docs`` or ``docs__v20260101t000000000000``.

        >>> IndexTarget.parse("docs__v20260101t000000000000").version
        'v20260101t000000000000'
        """
        if not isinstance(name, str):
            raise ConfigError(f"index must be a string, got {type(name).__name__}")
        if "__" in name:
            layout = IndexLayout.from_index_name(name)
            return cls(layout.alias, layout.version)
        return cls(validate_index_name(name))


@dataclass(frozen=True)
class IndexInfo:
    """What a handler learned from the catalog in ``__enter__``."""

    record: VersionRecord
    kinds: dict[str, FieldKind]
    dimension: int
    algorithm: str
    distance: str
    ef_runtime: int

    @property
    def index(self) -> str:
        return self.record.index

    @classmethod
    def from_record(cls, record: VersionRecord) -> "IndexInfo":
        spec = record.spec or {}
        dim = int(spec.get("dim") or record.embedding.get("dimension") or 0)
        return cls(record, field_kinds(spec.get("metadata_fields")), dim,
                   str(spec.get("algorithm", "hnsw")), str(spec.get("distance", "cosine")),
                   int(spec.get("hnsw_ef_runtime") or 10))

    def ef_runtime_for(self, config: "RedisSearchConfig") -> int | None:
        """The ``EF_RUNTIME`` to send: None for FLAT indexes."""
        if self.algorithm != "hnsw":
            return None
        if config.ef_runtime is not None:
            return config.ef_runtime
        return max(self.ef_runtime, MIN_EF_RUNTIME, 2 * config.top_k)


# --------------------------------------------------------------------------- query building


def _question_vector(request: Chunk, info: IndexInfo) -> bytes:
    vector = request.dense_embedding
    if not vector:
        raise ConfigError(f"question {request.id!r} has no dense embedding to search with")
    if len(vector) != info.dimension:
        raise ModelMismatchError(
            f"question {request.id!r} has a {len(vector)}-dimensional embedding, but index "
            f"{info.index} holds {info.dimension}-dimensional vectors of model "
            f"{info.record.embedding.get('model')!r}: embed questions with the index's model")
    return np.asarray(vector, dtype=np.float32).tobytes()


def dense_search_args(request: Chunk, info: IndexInfo, config: RedisSearchConfig) -> list[Any]:
    """``FT.SEARCH`` arguments of one KNN query (index name first).

    The filter comes from :func:`rag_core.filters.build_filter`; the vector and
    ``EF_RUNTIME`` are query parameters.
    """
    from redisvl.query import VectorQuery

    return_fields = list(_HIT_FIELDS) + (["text"] if config.return_text else [])
    query = VectorQuery(
        vector=_question_vector(request, info),
        vector_field_name=VECTOR_FIELD,
        return_fields=return_fields,
        filter_expression=build_filter(request.metadata.get(FILTER_KEY), info.kinds),
        num_results=config.top_k,
        ef_runtime=info.ef_runtime_for(config),
        dialect=2,
    )
    params: list[Any] = []
    for key, value in query.params.items():
        params += [key, value]
    return [info.index, *query.get_args(), "PARAMS", len(params), *params]


def _indexing_state(reply: Any) -> tuple[bool, float]:
    """``(indexing, percent_indexed)`` from a raw RESP2 ``FT.INFO`` reply (a flat key/value list)."""
    if isinstance(reply, dict):
        fields = reply
    else:
        items = list(reply or [])
        fields = {_text(k): v for k, v in zip(items[::2], items[1::2])}
    indexing = bool(int(float(_text(fields.get("indexing", 0)) or 0)))
    percent = float(_text(fields.get("percent_indexed", 1)) or 0)
    return indexing, percent


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _score(distance: float, metric: str) -> float:
    return -distance if metric == "l2" else 1.0 - distance


def parse_search_reply(reply: Sequence[Any], info: IndexInfo, config: RedisSearchConfig) -> list[Hit]:
    """A RESP2 ``FT.SEARCH`` reply → hits, best first (ties by chunk id), thresholded."""
    hits: list[Hit] = []
    for pos in range(1, len(reply) - 1, 2):
        raw = reply[pos + 1] or []
        fields = {_text(raw[i]): raw[i + 1] for i in range(0, len(raw) - 1, 2)}
        distance = float(_text(fields.get(DISTANCE_FIELD, "nan")))
        score = _score(distance, info.distance)
        if config.score_threshold is not None and not score >= config.score_threshold:
            continue
        hits.append({
            "chunk_id": _text(fields.get("chunk_id", b"")),
            "doc_id": _text(fields.get("doc_id", b"")),
            "title": _text(fields.get("title", b"")),
            "text": _text(fields["text"]) if config.return_text and "text" in fields else None,
            "score": round(score, 6),
            "chunk_index": int(float(_text(fields.get("chunk_index", b"0")))),
        })
    hits.sort(key=lambda h: (-h["score"], h["chunk_id"]))
    return hits


def hybrid_search_args(request: Chunk, info: IndexInfo, config: RedisSearchConfig) -> list[list[Any]]:
    """The ``FT.SEARCH`` commands of one hybrid question: the KNN query and, when the
    question has a searchable word, the BM25 query (same filter, same fields), each
    for ``max(top_k, hybrid.candidates)`` chunks."""
    depth = max(config.top_k, config.hybrid.candidates)
    deep = replace(config, top_k=depth) if depth != config.top_k else config
    commands = [dense_search_args(request, info, deep)]
    expression = build_filter(request.metadata.get(FILTER_KEY), info.kinds)
    return_fields = list(_HIT_FIELDS) + (["text"] if config.return_text else [])
    text = text_search_args(request.content.text or "", info.index, return_fields, depth, config.hybrid.text,
                            "*" if expression is None else str(expression))
    if text is not None:
        commands.append(text)
    return commands


def _parse_text_reply(reply: Sequence[Any], config: RedisSearchConfig) -> list[Hit]:
    """A RESP2 ``FT.SEARCH ... WITHSCORES`` reply → hits with their BM25 ``score``."""
    hits: list[Hit] = []
    for pos in range(1, len(reply) - 2, 3):
        raw = reply[pos + 2] or []
        fields = {_text(raw[i]): raw[i + 1] for i in range(0, len(raw) - 1, 2)}
        hits.append({
            "chunk_id": _text(fields.get("chunk_id", b"")),
            "doc_id": _text(fields.get("doc_id", b"")),
            "title": _text(fields.get("title", b"")),
            "text": _text(fields["text"]) if config.return_text and "text" in fields else None,
            "score": float(_text(reply[pos + 1])),
            "chunk_index": int(float(_text(fields.get("chunk_index", b"0")))),
        })
    return hits


def parse_hybrid_replies(replies: Sequence[Any], info: IndexInfo, config: RedisSearchConfig) -> list[Hit]:
    """The replies of :func:`hybrid_search_args` → fused hits, best first (``top_k`` at most)."""
    dense = parse_search_reply(replies[0], info, config)
    if config.score_threshold is not None and not dense:
        return []
    text = _parse_text_reply(replies[1], config) if len(replies) > 1 else []
    return fuse_hits(dense, text, config.hybrid.fusion, config.top_k)


@dataclass(frozen=True)
class RetrievalMode:
    """How one retrieval mode builds its command(s) and reads the reply (replies).

    ``multi`` modes send several commands per question: ``build`` returns a list of
    argument lists and ``parse`` gets their replies, in order, in the same round trip.
    """

    command: str
    build: Callable[[Chunk, IndexInfo, RedisSearchConfig], Any]
    parse: Callable[[Sequence[Any], IndexInfo, RedisSearchConfig], list[Hit]]
    multi: bool = False


RETRIEVAL_MODES: dict[str, RetrievalMode] = {
    "dense": RetrievalMode("FT.SEARCH", dense_search_args, parse_search_reply),
    "hybrid": RetrievalMode("FT.SEARCH", hybrid_search_args, parse_hybrid_replies, multi=True),
}


# --------------------------------------------------------------------------- handler


def _compatible(stored: Mapping[str, Any], expected: Mapping[str, Any], index: str) -> None:
    for key in ("model", "dimension", "backend_family"):
        if key in stored and key in expected and stored[key] != expected[key]:
            raise ModelMismatchError(
                f"Index {index} was built with {key} {stored[key]!r}, but the questions use "
                f"{expected[key]!r}: vectors would not be comparable. Embed questions with the "
                "index's model, or rebuild the index.")


Request = Union[Chunk, list[Chunk]]


class RedisVectorSearchHandler(EnrichmentSourceHandler[Request, Any]):
    """Nearest chunks in a Redis vector index for each question ``Chunk``.

    Cheap to build and to pickle; connects in ``__enter__``.

    Example:
        >>> conn = RedisConnection.from_url("redis://127.0.0.1:6379")
        >>> handler = RedisVectorSearchHandler(RedisSearchConfig(conn, "docs", max_batch_size=16))
        >>> handler.batch_elements_kwargs()
        {'min_batch_size': 1, 'max_batch_size': 16}
    """

    def __init__(self, config: RedisSearchConfig):
        self.config = config
        self.target = IndexTarget.parse(config.index)
        self._mode = RETRIEVAL_MODES[config.retrieval]
        self._client: Any = None
        self._info: IndexInfo | None = None
        self._down_since: float | None = None  # monotonic time of the last exhausted retry budget
        # Read by Beam's Enrichment: hand (request, response) to join_fn as they are.
        self.use_custom_types = True
        self.join_fn = join_hits

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> "RedisVectorSearchHandler":
        if self._client is None:
            client = self.config.connection.client(retry=False)
            try:
                self._info = self._with_retries("reading the index catalog", lambda: self._load_info(client))
            except BaseException:
                client.close()
                raise
            self._client = client
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        state["_info"] = None
        state["_down_since"] = None
        return state

    def _load_info(self, client: Any) -> IndexInfo:
        catalog = IndexCatalog(client, self.target.alias)
        if self.target.version is None:
            record = catalog.current()
        else:
            found = catalog.get(self.target.version)
            if found is None:
                raise IndexNotFoundError(f"Index version {self.config.index!r} is not in the catalog")
            record = found
        if ft_info(client, record.index) is None:
            raise IndexNotFoundError(f"Index {record.index} is in the catalog but not in Redis (dropped?)")
        info = IndexInfo.from_record(record)
        if info.dimension <= 0:
            raise IndexNotFoundError(f"Index {record.index} has no vector dimension in its catalog record")
        if self.config.expected_embedding:
            _compatible(dict(record.embedding, dimension=info.dimension), self.config.expected_embedding,
                        record.index)
        return info

    @property
    def index_info(self) -> IndexInfo:
        """The catalog facts read in ``__enter__`` (the pinned version, its model ...)."""
        if self._info is None:
            raise RuntimeError("use the handler inside `with handler:` (Beam's Enrichment does)")
        return self._info

    # -- Beam Caller API --------------------------------------------------------
    def __call__(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        requests = request if isinstance(request, list) else [request]
        if not requests:
            return []
        info = self.index_info
        mode = self._mode
        groups = [mode.build(r, info, self.config) if mode.multi else [mode.build(r, info, self.config)]
                  for r in requests]
        commands = [args for group in groups for args in group]
        started = time.perf_counter()
        try:
            replies = self._search_with_breaker(commands)
        except RedisUnavailableError as exc:
            if self.config.on_unavailable == "raise":
                raise
            failed = {"hits": [], "index": info.index, ERROR_KEY: str(exc),
                      "latency_ms": (time.perf_counter() - started) * 1000.0, "batch_size": len(requests)}
            pairs = [(req, dict(failed)) for req in requests]
            return pairs if isinstance(request, list) else pairs[0]
        latency_ms = (time.perf_counter() - started) * 1000.0
        pairs = []
        end = 0
        for req, group in zip(requests, groups):
            start, end = end, end + len(group)
            hits = mode.parse(replies[start:end] if mode.multi else replies[start], info, self.config)
            pairs.append((req, {"hits": hits, "index": info.index, "latency_ms": latency_ms,
                                "batch_size": len(requests)}))
        return pairs if isinstance(request, list) else pairs[0]

    def _search_with_breaker(self, commands: list[list[Any]]) -> list[Any]:
        """The round trip with retries; one attempt only while Redis is known down."""
        cfg = self.config
        known_down = (cfg.on_unavailable == "report" and self._down_since is not None
                      and time.monotonic() - self._down_since < cfg.circuit_open_s)
        try:
            replies = self._with_retries("searching", lambda: self._round_trip(commands),
                                         retries=0 if known_down else None)
        except RedisUnavailableError as exc:
            if not known_down:
                self._down_since = time.monotonic()
                raise
            down_for = time.monotonic() - cast(float, self._down_since)
            raise RedisUnavailableError(f"{exc} (failing for {down_for:.1f} s, since a full retry budget of "
                                        f"{cfg.max_retries + 1} attempts ran out, so this batch tried once)") from None
        self._down_since = None
        return replies

    def _round_trip(self, commands: list[list[Any]]) -> list[Any]:
        """One pipelined round trip: an ``FT.INFO`` probe, then the searches.

        A restarted Redis replays its data and RediSearch re-indexes it in the
        background; searches meanwhile return partial results without any error, and
        redis-py reconnects transparently, so nothing else would notice. Redis runs the
        pipeline in order, so a probe saying "fully indexed" covers the searches after
        it; otherwise the replies are dropped and the batch waits for the re-index
        (bounded by ``reindex_wait_s``) and is searched again.
        """
        index = self.index_info.index
        deadline: float | None = None
        while True:
            pipe = self._client.pipeline(transaction=False)
            pipe.execute_command("FT.INFO", index)
            for args in commands:
                pipe.execute_command(self._mode.command, *args)
            replies = list(pipe.execute())
            indexing, percent = _indexing_state(replies[0])
            if not indexing and percent >= 1.0:
                return replies[1:]
            if deadline is None:
                _LOG.warning("Index %s is re-indexing (%.0f%%); waiting before searching it", index, percent * 100)
                deadline = time.monotonic() + self.config.reindex_wait_s
            if time.monotonic() >= deadline:
                raise RedisUnavailableError(
                    f"Index {index} in Redis at {self.config.connection.safe_url} is still re-indexing "
                    f"({percent:.0%} after {self.config.reindex_wait_s:g} s, e.g. after a restart); "
                    f"searching it now would miss documents")
            time.sleep(0.05)

    def _with_retries(self, what: str, fn: Callable[[], Any], retries: int | None = None) -> Any:
        import redis

        cfg = self.config
        retries = cfg.max_retries if retries is None else retries
        delay = cfg.backoff_s
        for attempt in range(retries + 1):
            try:
                return fn()
            except redis.AuthenticationError:
                raise RedisUnavailableError(
                    f"Redis at {cfg.connection.safe_url} refused the credentials") from None
            except (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError) as exc:
                if attempt == retries:
                    raise RedisUnavailableError(
                        f"{what.capitalize()} in Redis at {cfg.connection.safe_url} failed after "
                        f"{attempt + 1} attempt{'s' if attempt else ''}: {type(exc).__name__}") from None
                _LOG.warning("Redis %s failed (%s); retry %d/%d in %.2fs", what, type(exc).__name__,
                             attempt + 1, retries, delay)
                time.sleep(delay)
                delay = min(delay * 2, cfg.max_backoff_s)
        raise AssertionError("unreachable")  # pragma: no cover

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": self.config.min_batch_size, "max_batch_size": self.config.max_batch_size}

    def get_cache_key(self, request: Request) -> str:
        """Same vector, filter and settings → same key (the question id is not part of it)."""
        items = request if isinstance(request, list) else [request]
        digest = hashlib.sha256()
        for item in items:
            vector = item.dense_embedding or []
            digest.update(np.asarray(vector, dtype=np.float32).tobytes())
            digest.update(json.dumps(item.metadata.get(FILTER_KEY), sort_keys=True, default=str).encode())
        cfg = self.config
        if cfg.retrieval == "hybrid":  # the question text is part of the query
            for item in items:
                digest.update((item.content.text or "").encode("utf-8", errors="replace"))
        hybrid = f":{cfg.hybrid!r}" if cfg.retrieval == "hybrid" else ""
        return (f"redis-search:{cfg.index}:{cfg.retrieval}:{cfg.top_k}:{cfg.score_threshold}:"
                f"{cfg.ef_runtime}:{int(cfg.return_text)}{hybrid}:{digest.hexdigest()}")

    def __repr__(self) -> str:
        return (f"RedisVectorSearchHandler(url={self.config.connection.safe_url!r}, index={self.config.index!r}, "
                f"top_k={self.config.top_k})")


def join_hits(left: Chunk, right: SearchResponse) -> Chunk:
    """Beam ``Enrichment`` join: a copy of the question chunk with its hits.

    ``metadata["enrichment_data"]`` = the hits, best first; ``metadata["retrieval"]``
    = ``{"index", "latency_ms", "batch_size"}``. The input chunk is not modified.
    """
    metadata = dict(left.metadata)
    metadata[ENRICHMENT_KEY] = list(right["hits"])
    metadata[RETRIEVAL_KEY] = {k: v for k, v in right.items() if k != "hits"}
    return replace(left, metadata=metadata)
