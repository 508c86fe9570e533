"""Incremental builds: a chunk the live version already holds keeps its stored vector.

Before the embedding step, each chunk's ``content_hash`` (title + chunk text) is looked
up in the live version (the one the alias serves), in batches of pipelined round
trips: first the chunk's own key (``HMGET``: the common case, an unchanged document),
then, for what did not match, the ``content_hash`` TAG field of the live index (one
``FT.SEARCH ... LIMIT 0 1`` per hash, pipelined: a chunk that moved to another id or
document). A hit copies the vector's bytes into the chunk, so the new version stores
its own copy under its own prefix and never depends on the old version's keys; only
misses go through the embedding model.

Reuse is allowed only when the live version's vectors are the ones this run would
compute (:func:`plan_reuse`: same model, dimension, backend family, normalisation and
sequence length). A lookup that fails (the live version pruned or dropped meanwhile)
costs nothing but the reuse: the chunks are embedded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from rag_core.embeddings.compatibility import COMPARABLE_KEYS, quantization_of
from rag_core.filters import escape_tag_value
from rag_core.retry import RetriesExhaustedError, RetryPolicy, call_with_retries
from rag_core.sinks import METRICS_NAMESPACE
from rag_core.store.connection import RedisConnection
from rag_core.types import Chunk, ChunkMeta, Embedding
from rag_core.validation import check_positive_int

__all__ = ["REUSE_KEYS", "REUSED", "LookUpStoredVectors", "ReuseSource", "plan_reuse", "reuse_line",
           "vector_from_bytes"]

_LOG = logging.getLogger(__name__)

# Stored vectors are reused only when every one of these agrees (both sides have it):
# the comparability rule plus what changes the exact vector of a chunk.
REUSE_KEYS: tuple[str, ...] = (*COMPARABLE_KEYS, "normalize", "max_seq_length", "quantization")
REUSED = "reused"  # the tagged output of chunks whose vectors were copied
LOOKUP_RETRY = RetryPolicy(max_retries=3, backoff_s=0.2, max_backoff_s=2.0)


@dataclass(frozen=True)
class ReuseSource:
    """The live version whose stored vectors a build may copy."""

    index: str  # its FT index name ({alias}__{version})
    prefix: str  # its key prefix
    dimension: int

    def __post_init__(self) -> None:
        check_positive_int("dimension", self.dimension)


def plan_reuse(live: Mapping[str, Any] | None, described: Mapping[str, Any], *, enabled: bool = True,
               index: str = "", prefix: str = "") -> tuple[ReuseSource | None, str]:
    """Whether a build may reuse the live version's vectors, and why not (for the summary).

    ``live`` is the live version's embedding description (None: there is none).

    >>> d = {"model": "m", "dimension": 384, "backend_family": "torch", "normalize": True}
    >>> plan_reuse(d, d, index="kb__v1", prefix="p:")[0].index
    'kb__v1'
    >>> plan_reuse(d, {**d, "model": "n"})[1]
    "embedding model changed ('m' -> 'n'): every chunk embedded"
    >>> plan_reuse(d, d, enabled=False)[1]
    '--no-reuse: every chunk embedded'
    """
    if not enabled:
        return None, "--no-reuse: every chunk embedded"
    if live is None:
        return None, "no live version to reuse from: every chunk embedded"
    if "backend_family" in live:  # a record from before "quantization" was kept: what it then was
        live = {**live, "quantization": quantization_of(live)}
    for key in REUSE_KEYS:
        if key in live and key in described and live[key] != described[key]:
            return None, f"embedding {key} changed ({live[key]!r} -> {described[key]!r}): every chunk embedded"
    if not live.get("model") or not live.get("dimension"):
        return None, "the live version does not record its embedding settings: every chunk embedded"
    return ReuseSource(index=index, prefix=prefix, dimension=int(live["dimension"])), ""


def reuse_line(reused: int, total: int, source: ReuseSource | None, note: str) -> str:
    """The summary's one line about reuse.

    >>> reuse_line(3, 4, ReuseSource("kb__v1", "p:", 2), "")
    '3 of 4 chunks reused from kb__v1'
    >>> reuse_line(0, 4, None, "--no-reuse: every chunk embedded")
    '0 of 4 chunks reused (--no-reuse: every chunk embedded)'
    """
    if source is None:
        return f"{reused} of {total} chunks reused ({note})"
    return f"{reused} of {total} chunks reused from {source.index}"


def vector_from_bytes(raw: Any, dimension: int) -> list[float] | None:
    """A stored float32 vector as the list a ``Chunk`` carries; None unless it has ``dimension`` values.

    The list round-trips exactly: the writer turns it back into the same bytes.

    >>> raw = np.asarray([0.5, 0.1], dtype=np.float32).tobytes()
    >>> np.asarray(vector_from_bytes(raw, 2), dtype=np.float32).tobytes() == raw
    True
    >>> vector_from_bytes(raw, 3) is None, vector_from_bytes(None, 2) is None
    (True, True)
    """
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != 4 * dimension:
        return None
    return np.frombuffer(bytes(raw), dtype=np.float32).tolist()


def _search_hits(reply: Any) -> Any:
    """The stored vector of an ``FT.SEARCH ... RETURN 1 embedding`` reply (RESP2), or None."""
    if not isinstance(reply, list) or len(reply) < 3 or not isinstance(reply[2], list):
        return None
    fields = reply[2]
    for name, value in zip(fields[::2], fields[1::2]):
        if name in (b"embedding", "embedding"):
            return value
    return None


class _LookUpFn(beam.DoFn):
    """A batch of chunks → reused chunks (tagged :data:`REUSED`) and misses (main output)."""

    def __init__(self, connection: RedisConnection, source: ReuseSource | None):
        self.connection = connection
        self.source = source
        self._reused = Metrics.counter(METRICS_NAMESPACE, "chunks_reused")
        self._embedded = Metrics.counter(METRICS_NAMESPACE, "chunks_embedded")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "reuse_lookups_failed")

    def setup(self) -> None:
        self._client = self.connection.client() if self.source is not None else None

    def teardown(self) -> None:
        if self._client is not None:
            self._client.close()

    def process(self, batch: Sequence[Chunk]) -> Iterator[Any]:
        vectors = self._look_up(batch) if self.source is not None else {}
        for n, chunk in enumerate(batch):
            vector = vectors.get(n)
            if vector is None:
                self._embedded.inc()
                yield chunk
            else:
                self._reused.inc()
                yield beam.pvalue.TaggedOutput(REUSED, replace(chunk, embedding=Embedding(dense_embedding=vector)))

    def _look_up(self, batch: Sequence[Chunk]) -> dict[int, list[float]]:
        import redis

        source = self.source
        assert source is not None and self._client is not None
        hashes = [str(c.metadata.get(ChunkMeta.CONTENT_HASH) or "") for c in batch]

        def same_key() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for chunk in batch:
                pipe.hmget(source.prefix + chunk.id, "content_hash", "embedding")
            return pipe.execute()

        def by_hash(wanted: Sequence[str]) -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for h in wanted:
                pipe.execute_command("FT.SEARCH", source.index, f"@content_hash:{{{escape_tag_value(h)}}}",
                                     "RETURN", "1", "embedding", "LIMIT", "0", "1", "DIALECT", "2")
            return pipe.execute(raise_on_error=False)

        found: dict[int, list[float]] = {}
        try:
            stored = call_with_retries(same_key, LOOKUP_RETRY, what="Looking up stored vectors")
            for n, (h, (stored_hash, raw)) in enumerate(zip(hashes, stored)):
                vector = vector_from_bytes(raw, source.dimension) if h and stored_hash == h.encode() else None
                if vector is not None:
                    found[n] = vector
            wanted = sorted({h for n, h in enumerate(hashes) if h and n not in found})
            if wanted:
                replies = call_with_retries(lambda: by_hash(wanted), LOOKUP_RETRY,
                                            what="Looking up stored vectors by content hash")
                moved = {h: vector_from_bytes(_search_hits(r), source.dimension) for h, r in zip(wanted, replies)}
                for n, h in enumerate(hashes):
                    if n not in found and moved.get(h) is not None:
                        found[n] = moved[h]  # type: ignore[assignment]
        except (redis.ResponseError, RetriesExhaustedError) as exc:
            # Reuse is an optimisation: the live version may have been pruned meanwhile.
            self._failed.inc()
            _LOG.warning("Looking up stored vectors in %s failed (%s): embedding this batch", source.index,
                         type(exc).__name__)
            return {}
        return found


class LookUpStoredVectors(beam.PTransform):
    """Chunks → ``{"misses": to embed, "reused": with the live version's vectors}``.

    With ``source`` None (reuse off) every chunk is a miss and Redis is not read.
    """

    def __init__(self, connection: RedisConnection, source: ReuseSource | None, batch_size: int = 256):
        super().__init__()
        check_positive_int("batch_size", batch_size)
        self.connection = connection
        self.source = source
        self.batch_size = batch_size

    def expand(self, chunks: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (chunks
                | "Batch" >> beam.BatchElements(min_batch_size=self.batch_size, max_batch_size=self.batch_size)
                | "LookUp" >> beam.ParDo(_LookUpFn(self.connection, self.source)).with_outputs(REUSED,
                                                                                              main="misses"))
