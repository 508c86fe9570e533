"""The Redis vector writer, shaped like Beam's ``apache_beam.ml.rag.ingestion`` writers.

``RedisVectorWriterConfig`` is a Beam ``VectorDatabaseWriteConfig``, so both
``VectorDatabaseWriteTransform(config)`` and ``config.create_write_transform()`` give
``Map(chunk_to_record) | ParDo(_WriteChunksFn)``: a pure converter (unit-tested
without a server) and a DoFn with one client, pipelined batched HSETs flushed by
count/bytes and in ``finish_bundle``, and bounded retries with backoff
(:mod:`rag_core.retry`). The DoFn emits one ``WriteSummary`` per bundle so a later
step can verify and publish the build once every write has landed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.rag.ingestion.base import VectorDatabaseWriteConfig
from apache_beam.transforms.window import GlobalWindows

from rag_core.errors import ConfigError, RedisRefusedError, RedisUnavailableError
from rag_core.progress import counter as progress_counter
from rag_core.retry import NO_RETRY, RetryPolicy, call_with_retries, refusal
from rag_core.store.connection import RedisConnection
from rag_core.store.schema import META_PREFIX, FieldKind, merge_field_kinds, metadata_field
from rag_core.types import Chunk, ChunkMeta
from rag_core.validation import check_int

Record = tuple[str, dict[str, Any]]

# Delete the chunks a document no longer has: {prefix}{doc_id}#n, #n+1, ... while they exist.
_DELETE_TAIL_LUA = """
local n = tonumber(ARGV[2])
local deleted = 0
while redis.call('EXISTS', ARGV[1] .. n) == 1 do
  redis.call('UNLINK', ARGV[1] .. n)
  n = n + 1
  deleted = deleted + 1
end
return deleted
"""


def field_kind(value: Any) -> FieldKind:
    return "numeric" if isinstance(value, (int, float)) and not isinstance(value, bool) else "tag"


def chunk_to_record(chunk: Chunk) -> Record:
    """A chunk with its embedding → (chunk id, Redis hash mapping). Pure.

    >>> from rag_core.types import Content, Embedding
    >>> c = Chunk(content=Content(text="t"), id="d#0", index=0,
    ...           metadata={"doc_id": "d", "text": "t", "metadata": {"lang": "en"}},
    ...           embedding=Embedding(dense_embedding=[0.5, 0.25]))
    >>> cid, rec = chunk_to_record(c)
    >>> cid, rec["doc_id"], rec["md_lang"], len(rec["embedding"])
    ('d#0', 'd', 'en', 8)
    """
    if chunk.embedding is None or not chunk.embedding.dense_embedding:
        raise ValueError(f"chunk {chunk.id!r} has no dense embedding")
    meta = chunk.metadata
    user_meta: dict[str, Any] = dict(meta.get(ChunkMeta.METADATA) or {})
    record: dict[str, Any] = {
        "text": meta.get(ChunkMeta.TEXT, chunk.content.text or ""),
        "title": meta.get(ChunkMeta.TITLE, ""),
        "url": meta.get(ChunkMeta.URL, ""),
        "doc_id": meta.get(ChunkMeta.DOC_ID, chunk.id.rsplit("#", 1)[0]),
        "chunk_id": chunk.id,
        "chunk_index": int(chunk.index),
        "chunk_count": int(meta.get(ChunkMeta.CHUNK_COUNT, 1)),
        "content_hash": meta.get(ChunkMeta.CONTENT_HASH, ""),
        "metadata": json.dumps(user_meta, ensure_ascii=False, sort_keys=True),
        "embedding": np.asarray(chunk.embedding.dense_embedding, dtype=np.float32).tobytes(),
    }
    for key, value in user_meta.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        record[metadata_field(key)] = value
    return chunk.id, record


@dataclass(frozen=True)
class WriteSummary:
    """What one bundle wrote: merged across bundles before publishing."""

    chunks: int = 0
    documents: int = 0
    bytes: int = 0
    metadata_fields: dict[str, FieldKind] = field(default_factory=dict)

    def merge(self, other: "WriteSummary") -> "WriteSummary":
        return WriteSummary(self.chunks + other.chunks, self.documents + other.documents,
                            self.bytes + other.bytes,
                            merge_field_kinds(self.metadata_fields, other.metadata_fields))


class MergeSummaries(beam.CombineFn):
    def create_accumulator(self) -> WriteSummary:
        return WriteSummary()

    def add_input(self, acc: WriteSummary, item: WriteSummary) -> WriteSummary:
        return acc.merge(item)

    def merge_accumulators(self, accs: Iterable[WriteSummary]) -> WriteSummary:
        out = WriteSummary()
        for a in accs:
            out = out.merge(a)
        return out

    def extract_output(self, acc: WriteSummary) -> WriteSummary:
        return acc


class WriteMode(str, Enum):
    """How a build writes into its index version."""

    REBUILD = "rebuild"
    """A fresh version: every key is new."""
    UPSERT = "upsert"
    """Into the live version: also deletes a document's chunks beyond its new chunk count."""


# Each flush is idempotent (same keys, same values), so resending a whole batch is safe.
WRITE_RETRY = RetryPolicy(max_retries=8, backoff_s=0.2, max_backoff_s=5.0)


@dataclass(frozen=True)
class RedisVectorWriterConfig(VectorDatabaseWriteConfig):
    """Where and how to write chunk records.

    Example:
        >>> from apache_beam.ml.rag.ingestion.base import VectorDatabaseWriteTransform
        >>> config = RedisVectorWriterConfig(RedisConnection.from_url("redis://127.0.0.1:6379"),
        ...                                  key_prefix="beamrag:docs:v20260101t000000000000:")
        >>> config.mode, config.retry.max_retries
        (<WriteMode.REBUILD: 'rebuild'>, 8)
        >>> _ = VectorDatabaseWriteTransform(config)  # Beam's own write transform accepts it

    Args:
        connection: the Redis to write to.
        key_prefix: prefix of every key (one index version's prefix).
        mode: a :class:`WriteMode` (or its value).
        batch_size / max_batch_bytes: flush thresholds of one pipelined round trip.
        retry: the backoff on connection errors; each flush is idempotent, so it is
            safe to resend.
    """

    connection: RedisConnection
    key_prefix: str
    mode: WriteMode = WriteMode.REBUILD
    batch_size: int = 256
    max_batch_bytes: int = 8 * 1024 * 1024
    retry: RetryPolicy = WRITE_RETRY

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", WriteMode(self.mode))
        except ValueError:
            raise ConfigError(f"--mode must be rebuild or upsert, got {self.mode!r}") from None
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("max_batch_bytes", self.max_batch_bytes, minimum=1024)
        if not self.key_prefix:
            raise ConfigError("key_prefix must not be empty")
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError("retry must be a rag_core.retry.RetryPolicy")

    def create_write_transform(self) -> beam.PTransform:
        return _WriteToRedis(self)


class _WriteToRedis(beam.PTransform):
    def __init__(self, config: RedisVectorWriterConfig):
        super().__init__()
        self.config = config

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        return (chunks
                | "ToRecord" >> beam.Map(chunk_to_record)
                | "WriteToRedis" >> beam.ParDo(_WriteChunksFn(self.config)))


class _WriteChunksFn(beam.DoFn):
    def __init__(self, config: RedisVectorWriterConfig):
        self.config = config
        self._chunks = progress_counter("beam_rag", "chunks_written")
        self._retries = Metrics.counter("beam_rag", "redis_write_retries")

    def setup(self) -> None:
        # No client-level retries: the flush retries the whole idempotent batch.
        self._client = self.config.connection.client(retry=NO_RETRY)
        self._delete_tail = self._client.register_script(_DELETE_TAIL_LUA)

    def start_bundle(self) -> None:
        self._batch: list[Record] = []
        self._batch_bytes = 0
        self._summary = WriteSummary()

    def process(self, element: Record) -> None:
        _, record = element
        self._batch.append(element)
        self._batch_bytes += len(record["embedding"]) + len(record["text"]) * 2
        if len(self._batch) >= self.config.batch_size or self._batch_bytes >= self.config.max_batch_bytes:
            self._flush()

    def finish_bundle(self) -> Iterable[Any]:
        self._flush()
        yield GlobalWindows.windowed_value(self._summary)

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    def _flush(self) -> None:
        if not self._batch:
            return
        import redis

        cfg = self.config

        def write() -> None:
            pipe = self._client.pipeline(transaction=False)
            for chunk_id, record in self._batch:
                pipe.hset(cfg.key_prefix + chunk_id, mapping=record)
                if cfg.mode == WriteMode.UPSERT and record["chunk_index"] == record["chunk_count"] - 1:
                    self._delete_tail(args=[f"{cfg.key_prefix}{record['doc_id']}#", record["chunk_count"]],
                                      client=pipe)
            pipe.execute()

        try:
            call_with_retries(write, cfg.retry, what=f"Writing to Redis at {cfg.connection.safe_url}",
                              on_retry=lambda *_: self._retries.inc())
        except redis.AuthenticationError:  # never retried: refused credentials stay refused
            raise RedisUnavailableError(
                f"Redis at {cfg.connection.safe_url} refused the credentials while writing") from None
        except redis.exceptions.NoPermissionError:
            raise  # the CLI names the permission (pipelines.command.unwrap_error)
        except redis.ResponseError as exc:  # not transient (those were retried): OOM, MISCONF, READONLY ...
            raise RedisRefusedError(
                f"Redis at {cfg.connection.safe_url} refused the write: {refusal(exc)}. The alias still serves "
                "the last complete version") from None
        kinds: dict[str, FieldKind] = {}
        for _, record in self._batch:
            for key, value in record.items():
                if key.startswith(META_PREFIX):
                    kinds = merge_field_kinds(kinds, {key[len(META_PREFIX):]: field_kind(value)})
        self._summary = self._summary.merge(WriteSummary(
            chunks=len(self._batch),
            documents=sum(1 for _, r in self._batch if r["chunk_index"] == 0),
            bytes=self._batch_bytes, metadata_fields=kinds))
        self._chunks.inc(len(self._batch))
        self._batch = []
        self._batch_bytes = 0
