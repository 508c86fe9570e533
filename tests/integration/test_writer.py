"""The Redis writer through Beam's own ``VectorDatabaseWriteTransform`` (real Redis, DirectRunner)."""

from __future__ import annotations

import dataclasses

import json
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.rag.ingestion.base import VectorDatabaseWriteConfig, VectorDatabaseWriteTransform
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from rag_core.ingestion import MergeSummaries, RedisVectorWriterConfig, WriteMode
from rag_core.retry import RetryPolicy
from rag_core.store.connection import RedisConnection
from rag_core.types import Chunk, ChunkMeta, Content, Embedding


def chunks(doc_id: str, n: int, metadata: dict[str, Any] | None = None) -> list[Chunk]:
    return [Chunk(content=Content(text=f"{doc_id} part {i}"), id=f"{doc_id}#{i}", index=i,
                  metadata={ChunkMeta.DOC_ID: doc_id, ChunkMeta.TITLE: doc_id.title(),
                            ChunkMeta.TEXT: f"{doc_id} part {i}", ChunkMeta.CHUNK_COUNT: n,
                            ChunkMeta.CONTENT_HASH: f"h{i}", ChunkMeta.METADATA: dict(metadata or {})},
                  embedding=Embedding(dense_embedding=[float(i), 0.5, -0.25]))
            for i in range(n)]


def write(config: RedisVectorWriterConfig, items: list[Chunk]) -> Any:
    """Run ``items | VectorDatabaseWriteTransform(config)``, checking the merged write summary;
    returns the pipeline result."""
    pipeline = BeamTestPipeline()
    summary = (pipeline
               | beam.Create(items)
               | VectorDatabaseWriteTransform(config)
               | beam.CombineGlobally(MergeSummaries())
               | beam.Map(lambda s: (s.chunks, s.documents)))
    assert_that(summary, equal_to([(len(items), sum(1 for c in items if c.index == 0))]))
    result = pipeline.run()
    result.wait_until_finish()
    return result


def keys(client: Any, prefix: str) -> set[str]:
    return {k.decode()[len(prefix):] for k in client.scan_iter(match=prefix + "*", count=1000)}


class TestVectorDatabaseWriteTransform:
    def test_the_config_is_a_beam_write_config(self, redis_conn: RedisConnection) -> None:
        config = RedisVectorWriterConfig(redis_conn, key_prefix="beamrag:t:v1:", mode="upsert")
        assert isinstance(config, VectorDatabaseWriteConfig) and config.mode is WriteMode.UPSERT
        with pytest.raises(TypeError):
            VectorDatabaseWriteTransform(config.connection)  # type: ignore[arg-type]

    def test_chunks_land_as_hashes_with_their_metadata(self, redis_conn: RedisConnection, redis_client: Any,
                                                        index_name: str) -> None:
        prefix = f"beamrag:{index_name}:v1:"
        items = chunks("alpha", 3, {"lang": "en", "year": 2024, "draft": True}) + chunks("beta", 2)
        result = write(RedisVectorWriterConfig(redis_conn, key_prefix=prefix, batch_size=2), items)
        assert keys(redis_client, prefix) == {"alpha#0", "alpha#1", "alpha#2", "beta#0", "beta#1"}
        stored = {k.decode(): v for k, v in redis_client.hgetall(prefix + "alpha#1").items()}
        assert stored["doc_id"] == b"alpha" and stored["chunk_id"] == b"alpha#1" and stored["title"] == b"Alpha"
        assert stored["text"] == b"alpha part 1" and stored["chunk_count"] == b"3" and stored["chunk_index"] == b"1"
        assert stored["md_lang"] == b"en" and stored["md_year"] == b"2024" and stored["md_draft"] == b"true"
        assert json.loads(stored["metadata"]) == {"draft": True, "lang": "en", "year": 2024}
        assert np.frombuffer(stored["embedding"], dtype=np.float32).tolist() == [1.0, 0.5, -0.25]
        written = result.metrics().query(MetricsFilter().with_name("chunks_written"))["counters"]
        assert sum(c.committed or c.attempted for c in written) == 5

    def test_upsert_deletes_the_chunks_a_document_no_longer_has(self, redis_conn: RedisConnection,
                                                               redis_client: Any, index_name: str) -> None:
        prefix = f"beamrag:{index_name}:v1:"
        write(RedisVectorWriterConfig(redis_conn, key_prefix=prefix), chunks("alpha", 4) + chunks("beta", 1))
        write(RedisVectorWriterConfig(redis_conn, key_prefix=prefix, mode=WriteMode.UPSERT), chunks("alpha", 2))
        assert keys(redis_client, prefix) == {"alpha#0", "alpha#1", "beta#0"}
        assert redis_client.hget(prefix + "alpha#1", "chunk_count") == b"2"

    def test_a_stall_is_retried_and_counted(self, redis_conn: RedisConnection, redis_client: Any, index_name: str) -> None:
        prefix = f"beamrag:{index_name}:v1:"
        conn = dataclasses.replace(redis_conn, socket_timeout=0.3)
        config = RedisVectorWriterConfig(conn, key_prefix=prefix,
                                         retry=RetryPolicy(max_retries=8, backoff_s=0.1, max_backoff_s=0.5))

        class PauseRedisOnce(beam.DoFn):
            """Pauses Redis just before the first chunk reaches the writer."""

            def setup(self) -> None:
                self._client = conn.client()

            def process(self, element: Chunk) -> Any:
                if element.index == 0:
                    self._client.execute_command("CLIENT", "PAUSE", 800, "ALL")
                yield element

            def teardown(self) -> None:
                self._client.close()

        try:
            pipeline = BeamTestPipeline()
            _ = (pipeline
                 | beam.Create(chunks("alpha", 1))
                 | beam.ParDo(PauseRedisOnce())
                 | VectorDatabaseWriteTransform(config))
            result = pipeline.run()
            result.wait_until_finish()
        finally:
            redis_client.execute_command("CLIENT", "UNPAUSE")
        assert keys(redis_client, prefix) == {"alpha#0"}
        retries = result.metrics().query(MetricsFilter().with_name("redis_write_retries"))["counters"]
        assert sum(c.committed or c.attempted for c in retries) >= 1

    def test_an_unreachable_redis_fails_after_the_bounded_retries(self, free_port: Any) -> None:
        url = f"redis://127.0.0.1:{free_port()}/0"
        config = RedisVectorWriterConfig(RedisConnection.from_url(url, connect_timeout=0.5), key_prefix="beamrag:x:v1:",
                                         retry=RetryPolicy(max_retries=1, backoff_s=0.05))
        with pytest.raises(Exception, match=rf"Writing to Redis at {url} failed after 2 attempts: ConnectionError"):
            pipeline = BeamTestPipeline()
            _ = pipeline | beam.Create(chunks("alpha", 1)) | VectorDatabaseWriteTransform(config)
            pipeline.run().wait_until_finish()
