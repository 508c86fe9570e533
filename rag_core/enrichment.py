"""Redis vector search as a Beam ``EnrichmentSourceHandler``, shaped like Beam's
``apache_beam/ml/rag/enrichment/milvus_search.py``: the handler takes its concerns
whole (where Redis is, what to search, how to retry).

Use it through ``apache_beam.transforms.enrichment.Enrichment``::

    handler = RedisVectorSearchHandler(conn, VectorSearchParameters(index="docs", top_k=5))
    enriched = questions | Enrichment(handler, join_fn=join_hits, timeout=handler.worst_case_seconds())

``HybridSearchParameters(VectorSearchParameters(...), HybridConfig())`` searches in
hybrid mode instead (see :func:`search_parameters` to pick by :class:`RetrievalMode`).

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
errors under its :class:`~rag_core.retry.RetryPolicy` before raising
:class:`~rag_core.errors.RedisUnavailableError` (or, with ``on_unavailable="report"``,
answering each request with the error for the pipeline to dead-letter). ``__exit__``
closes the client.

Beam runs ``__call__`` in a worker thread where Beam metrics are not recorded, so
the latency travels with the response and the pipeline records it after the join.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Mapping, Sequence, Union, cast

import numpy as np
import redis
from apache_beam.transforms.enrichment import EnrichmentSourceHandler

from rag_core.embeddings.compatibility import check_comparable
from rag_core.errors import BeamRagError, ConfigError, IndexNotFoundError, ModelMismatchError, RedisUnavailableError
from rag_core.filters import build_filter, field_kinds
from rag_core.hybrid import HybridConfig, fuse_hits, text_search_args
from rag_core.retry import NO_RETRY, RetryPolicy, call_with_retries
from rag_core.store.catalog import IndexCatalog, VersionRecord
from rag_core.store.connection import RedisConnection
from rag_core.store.info import IndexStatus, index_status
from rag_core.store.schema import FieldKind, IndexLayout
from rag_core.types import Chunk
from rag_core.validation import check_int, check_number, check_optional_int

__all__ = [
    "ENRICHMENT_KEY",
    "ERROR_KEY",
    "RETRIEVAL_KEY",
    "FILTER_KEY",
    "SEARCH_RETRY",
    "HybridSearchParameters",
    "OnUnavailable",
    "RedisVectorSearchHandler",
    "RetrievalMode",
    "SearchParameters",
    "SearchResponse",
    "VectorSearchParameters",
    "dense_search_args",
    "hybrid_search_args",
    "join_hits",
    "parse_hybrid_replies",
    "parse_search_reply",
    "search_parameters",
]

_LOG = logging.getLogger(__name__)

ENRICHMENT_KEY = "enrichment_data"  # Beam's convention (milvus_search.join_fn)
RETRIEVAL_KEY = "retrieval"
FILTER_KEY = "filter"
VECTOR_FIELD = "embedding"
DISTANCE_FIELD = "vector_distance"
_HIT_FIELDS = ("chunk_id", "doc_id", "title", "chunk_index")
MAX_TOP_K = 1000
# Set in a response by on_unavailable="report" when the batch's search failed.
ERROR_KEY = "error"
# HNSW EF_RUNTIME used when none is asked for: at least this (and 2 * top_k), even when
# the index's stored default is lower. Redis' default of 10 misses the true nearest
# neighbour even in small indexes (measured: 56 chunks, 4 facts among 52 look-alike
# notes, EF_RUNTIME 10 and 16 miss, 20+ find it).
MIN_EF_RUNTIME = 64
# How a search (and the catalog read in __enter__) is retried on connection errors.
SEARCH_RETRY = RetryPolicy(max_retries=5, backoff_s=0.1, max_backoff_s=2.0)

Hit = dict[str, Any]
# The response of one request: the hits (best first), the index searched, the latency.
SearchResponse = dict[str, Any]


class RetrievalMode(str, Enum):
    """How questions are searched (the values of ``--retrieval``)."""

    DENSE = "dense"
    """KNN over the chunk embeddings."""
    HYBRID = "hybrid"
    """KNN and BM25 over ``text``/``title``, fused: ``score`` is the fused score and each
    hit also has ``dense_score`` and ``text_score``."""


class OnUnavailable(str, Enum):
    """What a batch does when Redis stays unreachable through every retry."""

    RAISE = "raise"
    """:class:`RedisUnavailableError` (in-process callers)."""
    REPORT = "report"
    """Each request gets no hits and ``"error"`` = the reason, for the pipeline to
    dead-letter (batch pipelines, which must not lose the other questions)."""


@dataclass(frozen=True)
class VectorSearchParameters:
    """A KNN search of one knowledge base (dense retrieval).

    Args:
        index: the alias users type (``docs``), or a pinned version (``docs__v2026...``).
        top_k: passages per question (1..1000).
        score_threshold: drop hits scoring below this (cosine similarity). In hybrid mode it
            applies to the dense candidates before fusion, and a question none of whose
            dense candidates passes it gets no hits (full-text matches alone never count).
        ef_runtime: HNSW ``EF_RUNTIME`` for these queries (ignored for FLAT indexes);
            None uses the index's default raised to at least ``max(MIN_EF_RUNTIME, 2 * top_k)``.
        return_text: fetch chunk text (False for retrieval metrics that need only ids).
        expected_embedding: the embedding settings of the question vectors
            (``model``, ``dimension``, ``backend_family``); any key present in both
            this and the index's record must match, else ``ModelMismatchError``.
    """

    index: str
    top_k: int = 5
    score_threshold: float | None = None
    ef_runtime: int | None = None
    return_text: bool = True
    expected_embedding: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        IndexLayout.parse(self.index)
        check_int("top_k", self.top_k, minimum=1, maximum=MAX_TOP_K)
        if self.score_threshold is not None:
            check_number("score_threshold", self.score_threshold)
        check_optional_int("ef_runtime", self.ef_runtime, minimum=1)

    @property
    def mode(self) -> RetrievalMode:
        return RetrievalMode.DENSE

    @property
    def vector(self) -> "VectorSearchParameters":
        """The KNN part (itself), as :class:`HybridSearchParameters` has one."""
        return self

    def commands(self, request: Chunk, info: "IndexInfo") -> list[list[Any]]:
        """The ``FT.SEARCH`` argument lists of one question."""
        return [dense_search_args(request, info, self)]

    def parse(self, replies: Sequence[Any], info: "IndexInfo") -> list[Hit]:
        """The replies to :meth:`commands` → hits, best first."""
        return parse_search_reply(replies[0], info, self)


@dataclass(frozen=True)
class HybridSearchParameters:
    """A hybrid search: the KNN search of ``vector`` and a BM25 search, fused by ``hybrid``.

    Args:
        vector: the KNN side; its ``index``, ``top_k``, ``score_threshold`` ... apply to
            the whole search.
        hybrid: the BM25 query, fusion and candidate depth.
    """

    vector: VectorSearchParameters
    hybrid: HybridConfig = HybridConfig()

    def __post_init__(self) -> None:
        if not isinstance(self.vector, VectorSearchParameters):
            raise ConfigError("vector must be a VectorSearchParameters")
        if not isinstance(self.hybrid, HybridConfig):
            raise ConfigError("hybrid must be a rag_core.hybrid.HybridConfig")

    @property
    def mode(self) -> RetrievalMode:
        return RetrievalMode.HYBRID

    def commands(self, request: Chunk, info: "IndexInfo") -> list[list[Any]]:
        """The KNN and (when the question has a searchable word) the BM25 argument lists."""
        return hybrid_search_args(request, info, self)

    def parse(self, replies: Sequence[Any], info: "IndexInfo") -> list[Hit]:
        """The replies to :meth:`commands` → fused hits, best first."""
        return parse_hybrid_replies(replies, info, self)


SearchParameters = Union[VectorSearchParameters, HybridSearchParameters]


def search_parameters(mode: RetrievalMode | str, vector: VectorSearchParameters,
                      hybrid: HybridConfig | None = None) -> SearchParameters:
    """The search parameters of ``mode`` around ``vector`` (``hybrid`` defaults to ``HybridConfig()``).

    >>> search_parameters("hybrid", VectorSearchParameters("docs")).mode
    <RetrievalMode.HYBRID: 'hybrid'>
    """
    try:
        mode = RetrievalMode(mode)
    except ValueError:
        raise ConfigError(f"retrieval must be one of {', '.join(m.value for m in RetrievalMode)}, "
                          f"got {mode!r}") from None
    if mode is RetrievalMode.DENSE:
        return vector
    return HybridSearchParameters(vector, hybrid if hybrid is not None else HybridConfig())


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

    def ef_runtime_for(self, params: VectorSearchParameters) -> int | None:
        """The ``EF_RUNTIME`` to send: None for FLAT indexes."""
        if self.algorithm != "hnsw":
            return None
        if params.ef_runtime is not None:
            return params.ef_runtime
        return max(self.ef_runtime, MIN_EF_RUNTIME, 2 * params.top_k)


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


def dense_search_args(request: Chunk, info: IndexInfo, params: VectorSearchParameters) -> list[Any]:
    """``FT.SEARCH`` arguments of one KNN query (index name first).

    The filter comes from :func:`rag_core.filters.build_filter`; the vector and
    ``EF_RUNTIME`` are query parameters.
    """
    from redisvl.query import VectorQuery

    query = VectorQuery(
        vector=_question_vector(request, info),
        vector_field_name=VECTOR_FIELD,
        return_fields=_return_fields(params),
        filter_expression=build_filter(request.metadata.get(FILTER_KEY), info.kinds),
        num_results=params.top_k,
        ef_runtime=info.ef_runtime_for(params),
        dialect=2,
    )
    params: list[Any] = []
    for key, value in query.params.items():
        params += [key, value]
    return [info.index, *query.get_args(), "PARAMS", len(params), *params]


def _return_fields(params: VectorSearchParameters) -> list[str]:
    return list(_HIT_FIELDS) + (["text"] if params.return_text else [])


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _score(distance: float, metric: str) -> float:
    return -distance if metric == "l2" else 1.0 - distance


def parse_search_reply(reply: Sequence[Any], info: IndexInfo, params: VectorSearchParameters) -> list[Hit]:
    """A RESP2 ``FT.SEARCH`` reply → hits, best first (ties by chunk id), thresholded."""
    hits: list[Hit] = []
    for pos in range(1, len(reply) - 1, 2):
        raw = reply[pos + 1] or []
        fields = {_text(raw[i]): raw[i + 1] for i in range(0, len(raw) - 1, 2)}
        distance = float(_text(fields.get(DISTANCE_FIELD, "nan")))
        score = _score(distance, info.distance)
        if params.score_threshold is not None and not score >= params.score_threshold:
            continue
        hits.append({
            "chunk_id": _text(fields.get("chunk_id", b"")),
            "doc_id": _text(fields.get("doc_id", b"")),
            "title": _text(fields.get("title", b"")),
            "text": _text(fields["text"]) if params.return_text and "text" in fields else None,
            "score": round(score, 6),
            "chunk_index": int(float(_text(fields.get("chunk_index", b"0")))),
        })
    hits.sort(key=lambda h: (-h["score"], h["chunk_id"]))
    return hits


def hybrid_search_args(request: Chunk, info: IndexInfo, params: HybridSearchParameters) -> list[list[Any]]:
    """The ``FT.SEARCH`` commands of one hybrid question: the KNN query and, when the
    question has a searchable word, the BM25 query (same filter, same fields), each
    for ``max(top_k, hybrid.candidates)`` chunks."""
    vector = params.vector
    depth = max(vector.top_k, params.hybrid.candidates)
    commands = [dense_search_args(request, info, replace(vector, top_k=depth))]
    expression = build_filter(request.metadata.get(FILTER_KEY), info.kinds)
    text = text_search_args(request.content.text or "", info.index, _return_fields(vector), depth,
                            params.hybrid.text, "*" if expression is None else str(expression))
    if text is not None:
        commands.append(text)
    return commands


def _parse_text_reply(reply: Sequence[Any], params: VectorSearchParameters) -> list[Hit]:
    """A RESP2 ``FT.SEARCH ... WITHSCORES`` reply → hits with their BM25 ``score``."""
    hits: list[Hit] = []
    for pos in range(1, len(reply) - 2, 3):
        raw = reply[pos + 2] or []
        fields = {_text(raw[i]): raw[i + 1] for i in range(0, len(raw) - 1, 2)}
        hits.append({
            "chunk_id": _text(fields.get("chunk_id", b"")),
            "doc_id": _text(fields.get("doc_id", b"")),
            "title": _text(fields.get("title", b"")),
            "text": _text(fields["text"]) if params.return_text and "text" in fields else None,
            "score": float(_text(reply[pos + 1])),
            "chunk_index": int(float(_text(fields.get("chunk_index", b"0")))),
        })
    return hits


def parse_hybrid_replies(replies: Sequence[Any], info: IndexInfo, params: HybridSearchParameters) -> list[Hit]:
    """The replies of :func:`hybrid_search_args` → fused hits, best first (``top_k`` at most)."""
    vector = params.vector
    dense = parse_search_reply(replies[0], info, vector)
    if vector.score_threshold is not None and not dense:
        return []
    text = _parse_text_reply(replies[1], vector) if len(replies) > 1 else []
    return fuse_hits(dense, text, params.hybrid.fusion, vector.top_k)


# --------------------------------------------------------------------------- handler


def _seconds(name: str, value: Any) -> float:
    return check_number(name, value, minimum=0)


Request = Union[Chunk, list[Chunk]]


class RedisVectorSearchHandler(EnrichmentSourceHandler[Request, Any]):
    """Nearest chunks in a Redis vector index for each question ``Chunk``.

    Cheap to build and to pickle; connects in ``__enter__``.

    Args:
        connection: where Redis is.
        search_parameters: what to search: :class:`VectorSearchParameters` (dense) or
            :class:`HybridSearchParameters`.
        retry: the backoff on connection errors and timeouts.
        on_unavailable: an :class:`OnUnavailable` (or its value). Under ``"report"``,
            while Redis is known down (within ``circuit_open_s`` of the last exhausted
            retry budget) later batches try once, without the backoff, so a dead server
            costs one connection attempt per batch rather than the whole retry budget.
        circuit_open_s: how long a failure after all retries keeps that fast path on.
        hung_probe_s: when that failure was a timeout (a hung server, where each try
            costs a full socket timeout), batches within ``circuit_open_s`` are failed at
            once without a round trip, and one batch every ``hung_probe_s`` probes it.
        reindex_wait_s: while RediSearch re-indexes (e.g. after a restart), wait up to
            this long before searching: a search during the re-index silently misses
            documents. Past it the batch fails as unavailable (dead-lettered under
            ``"report"``).
        min_batch_size / max_batch_size: Beam ``BatchElements`` bounds: questions
            per Redis round trip.

    Example:
        >>> conn = RedisConnection.from_url("redis://127.0.0.1:6379")
        >>> handler = RedisVectorSearchHandler(conn, VectorSearchParameters("docs"), max_batch_size=16)
        >>> handler.batch_elements_kwargs()
        {'min_batch_size': 1, 'max_batch_size': 16}
    """

    def __init__(self, connection: RedisConnection, search_parameters: SearchParameters, *,
                 retry: RetryPolicy = SEARCH_RETRY, on_unavailable: OnUnavailable | str = OnUnavailable.RAISE,
                 circuit_open_s: float = 30.0, hung_probe_s: float = 5.0, reindex_wait_s: float = 60.0,
                 min_batch_size: int = 1, max_batch_size: int = 32):
        if not isinstance(connection, RedisConnection):
            raise ConfigError("connection must be a RedisConnection (use RedisConnection.from_url)")
        if not isinstance(search_parameters, (VectorSearchParameters, HybridSearchParameters)):
            raise ConfigError("search_parameters must be a VectorSearchParameters or HybridSearchParameters")
        if not isinstance(retry, RetryPolicy):
            raise ConfigError("retry must be a rag_core.retry.RetryPolicy")
        try:
            on_unavailable = OnUnavailable(on_unavailable)
        except ValueError:
            raise ConfigError(f"on_unavailable must be one of {', '.join(m.value for m in OnUnavailable)}, "
                              f"got {on_unavailable!r}") from None
        check_int("min_batch_size", min_batch_size, minimum=1)
        check_int("max_batch_size", max_batch_size, minimum=min_batch_size)
        self.connection = connection
        self.search_parameters = search_parameters
        self.retry = retry
        self.on_unavailable = on_unavailable
        self.circuit_open_s = _seconds("circuit_open_s", circuit_open_s)
        self.hung_probe_s = _seconds("hung_probe_s", hung_probe_s)
        self.reindex_wait_s = _seconds("reindex_wait_s", reindex_wait_s)
        self.min_batch_size = min_batch_size
        self.max_batch_size = max_batch_size
        self.alias, self.pinned = IndexLayout.parse(search_parameters.vector.index)
        self._client: Any = None
        self._info: IndexInfo | None = None
        self._down_since: float | None = None  # monotonic time of the last exhausted retry budget
        self._hung = False  # the last failure timed out: the server accepts but does not answer
        self._last_try = 0.0  # monotonic time of the last round trip attempted while known down
        # Read by Beam's Enrichment: hand (request, response) to join_fn as they are.
        self.use_custom_types = True
        self.join_fn = join_hits

    def worst_case_seconds(self) -> float:
        """An upper bound on one batch's time when Redis is down: a timeout for
        ``Enrichment(timeout=...)`` that never cuts the handler's own retries short."""
        per_try = self.connection.connect_timeout + self.connection.socket_timeout
        return sum(self.retry.delays()) + self.retry.attempts * per_try + 5.0

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> "RedisVectorSearchHandler":
        if self._client is None:
            # No client-level retries: every call below is retried whole under self.retry.
            client = self.connection.client(retry=NO_RETRY)
            try:
                self._info = self._with_retries("Reading the index catalog", lambda: self._load_info(client))
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
        catalog = IndexCatalog(client, self.alias)
        if self.pinned is None:
            record = catalog.current()
        else:
            found = catalog.get(self.pinned.version)
            if found is None:
                raise IndexNotFoundError(f"Index version {self.pinned.index_name!r} is not in the catalog")
            record = found
        if index_status(client, record.index) is None:
            raise IndexNotFoundError(f"Index {record.index} is in the catalog but not in Redis (dropped?)")
        info = IndexInfo.from_record(record)
        if info.dimension <= 0:
            raise IndexNotFoundError(f"Index {record.index} has no vector dimension in its catalog record")
        expected = self.search_parameters.vector.expected_embedding
        if expected:
            check_comparable(dict(record.embedding, dimension=info.dimension), expected, record.index)
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
        params = self.search_parameters
        groups = [params.commands(r, info) for r in requests]
        commands = [args for group in groups for args in group]
        started = time.perf_counter()
        try:
            replies = self._search_with_breaker(commands)
        except RedisUnavailableError as exc:
            if self.on_unavailable is OnUnavailable.RAISE:
                raise
            failed = {"hits": [], "index": info.index, ERROR_KEY: str(exc),
                      "latency_ms": (time.perf_counter() - started) * 1000.0, "batch_size": len(requests)}
            pairs = [(req, dict(failed)) for req in requests]
            return pairs if isinstance(request, list) else pairs[0]
        except redis.ResponseError as exc:  # not transient (those were retried): OOM, NOPERM, index gone ...
            if _index_gone(exc) and self._re_resolve(info):
                return self(request, *args, **kwargs)  # the alias serves another version now: search that once
            if self.on_unavailable is OnUnavailable.RAISE:
                raise
            failed = {"hits": [], "index": info.index, ERROR_KEY: f"Redis refused the search of {info.index}: {exc}",
                      "latency_ms": (time.perf_counter() - started) * 1000.0, "batch_size": len(requests)}
            pairs = [(req, dict(failed)) for req in requests]
            return pairs if isinstance(request, list) else pairs[0]
        latency_ms = (time.perf_counter() - started) * 1000.0
        pairs = []
        end = 0
        for req, group in zip(requests, groups):
            start, end = end, end + len(group)
            hits = params.parse(replies[start:end], info)
            pairs.append((req, {"hits": hits, "index": info.index, "latency_ms": latency_ms,
                                "batch_size": len(requests)}))
        return pairs if isinstance(request, list) else pairs[0]

    def _re_resolve(self, gone: IndexInfo) -> bool:
        """After ``gone``'s index disappeared (pruned, dropped): read the alias again.

        True when it now serves another version (the batch is searched there); a pinned
        version, an alias that still names ``gone``, or none at all is not re-resolved.
        """
        if self.pinned is not None:
            return False
        try:
            info = self._with_retries("Re-reading the index catalog", lambda: self._load_info(self._client))
        except BeamRagError:
            return False
        if info.index == gone.index:
            return False
        _LOG.warning("Index %s disappeared; %s now serves %s", gone.index, self.alias, info.index)
        self._info = info
        return True

    def _search_with_breaker(self, commands: list[list[Any]]) -> list[Any]:
        """The round trip with retries; one attempt only while Redis is known down."""
        now = time.monotonic()
        known_down = (self.on_unavailable is OnUnavailable.REPORT and self._down_since is not None
                      and now - self._down_since < self.circuit_open_s)
        if known_down and self._hung and now - self._last_try < self.hung_probe_s:
            raise RedisUnavailableError(
                f"Redis at {self.connection.safe_url} is not answering (its searches timed out "
                f"{now - cast(float, self._down_since):.1f} s ago after {self.retry.attempts} attempts), so this "
                f"batch was not sent; the next probe is in {self.hung_probe_s - (now - self._last_try):.1f} s")
        self._last_try = now
        try:
            replies = self._with_retries("Searching", lambda: self._round_trip(commands),
                                         self.retry.with_max_retries(0) if known_down else self.retry)
        except RedisUnavailableError as exc:
            self._hung = _timed_out(exc)
            self._last_try = time.monotonic()
            if not known_down:
                self._down_since = self._last_try
                raise
            down_for = time.monotonic() - cast(float, self._down_since)
            raise RedisUnavailableError(f"{exc} (failing for {down_for:.1f} s, since a full retry budget of "
                                        f"{self.retry.attempts} attempts ran out, so this batch tried once)") from None
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
                pipe.execute_command("FT.SEARCH", *args)
            replies = list(pipe.execute())
            status = IndexStatus.from_reply(replies[0])
            if status.ready:
                return replies[1:]
            if deadline is None:
                _LOG.warning("Index %s is re-indexing (%.0f%%); waiting before searching it", index,
                             status.percent_indexed * 100)
                deadline = time.monotonic() + self.reindex_wait_s
            if time.monotonic() >= deadline:
                raise RedisUnavailableError(
                    f"Index {index} in Redis at {self.connection.safe_url} is still re-indexing "
                    f"({status.percent_indexed:.0%} after {self.reindex_wait_s:g} s, e.g. after a restart); "
                    f"searching it now would miss documents")
            time.sleep(0.05)

    def _with_retries(self, what: str, fn: Any, policy: RetryPolicy | None = None) -> Any:
        """``fn()`` under ``policy`` (default ``self.retry``); refused credentials are never retried."""
        import redis

        try:
            return call_with_retries(fn, self.retry if policy is None else policy,
                                     what=f"{what} in Redis at {self.connection.safe_url}")
        except redis.AuthenticationError:
            raise RedisUnavailableError(f"Redis at {self.connection.safe_url} refused the credentials") from None

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": self.min_batch_size, "max_batch_size": self.max_batch_size}

    def get_cache_key(self, request: Request) -> str:
        """Same vector, filter and settings → same key (the question id is not part of it)."""
        items = request if isinstance(request, list) else [request]
        digest = hashlib.sha256()
        for item in items:
            vector = item.dense_embedding or []
            digest.update(np.asarray(vector, dtype=np.float32).tobytes())
            digest.update(json.dumps(item.metadata.get(FILTER_KEY), sort_keys=True, default=str).encode())
        params = self.search_parameters
        hybrid = ""
        if isinstance(params, HybridSearchParameters):  # the question text is part of the query
            for item in items:
                digest.update((item.content.text or "").encode("utf-8", errors="replace"))
            hybrid = f":{params.hybrid!r}"
        v = params.vector
        return (f"redis-search:{v.index}:{params.mode.value}:{v.top_k}:{v.score_threshold}:"
                f"{v.ef_runtime}:{int(v.return_text)}{hybrid}:{digest.hexdigest()}")

    def __repr__(self) -> str:
        v = self.search_parameters.vector
        return (f"RedisVectorSearchHandler(url={self.connection.safe_url!r}, index={v.index!r}, "
                f"mode={self.search_parameters.mode.value!r}, top_k={v.top_k})")


def _timed_out(exc: RedisUnavailableError) -> bool:
    """Whether the retries ran out on timeouts (a hung server) rather than refused connections."""
    last = getattr(exc, "last_error", None)
    return isinstance(last, (redis.TimeoutError, TimeoutError))


def _index_gone(exc: BaseException) -> bool:
    """Whether a RediSearch error says the searched index does not exist (any RediSearch version).

    >>> _index_gone(Exception("Command # 1 (FT.INFO x) of pipeline caused error: Unknown index name"))
    True
    >>> _index_gone(Exception("x: no such index")), _index_gone(Exception("OOM command not allowed"))
    (True, False)
    """
    text = str(exc).lower()
    return "unknown index name" in text or "no such index" in text


def join_hits(left: Chunk, right: SearchResponse) -> Chunk:
    """Beam ``Enrichment`` join: a copy of the question chunk with its hits.

    ``metadata["enrichment_data"]`` = the hits, best first; ``metadata["retrieval"]``
    = ``{"index", "latency_ms", "batch_size"}``. The input chunk is not modified.
    """
    metadata = dict(left.metadata)
    metadata[ENRICHMENT_KEY] = list(right["hits"])
    metadata[RETRIEVAL_KEY] = {k: v for k, v in right.items() if k != "hits"}
    return replace(left, metadata=metadata)
