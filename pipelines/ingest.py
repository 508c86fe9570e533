"""The knowledge-base build: read → validate → dedupe → chunk → embed → write → publish.

    beam-rag ingest --input 'docs/*.jsonl' --index docs [--mode rebuild|upsert] [Beam flags]
    python -m pipelines.ingest --input ... --index ...

``rebuild`` (the scheduled job's default) writes a new index version under its
own key prefix and, only once every write landed and Redis has indexed it all,
points the alias at it in one FT.ALIASUPDATE. ``upsert`` writes into the live
version idempotently.

Both are incremental (:mod:`rag_core.reuse`): a chunk whose content hash the live
version already holds keeps its stored vector (copied into the new version's own keys);
only the others are embedded. ``--no-reuse`` embeds everything; a change of embedding
model, backend family or dimension turns reuse off and the summary says so.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, replace
from typing import Any, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.command import PipelineCommand, progress, read_metrics
from pipelines.progress import Track, count_records, live
from pipelines.options import (BuildMode, CommonOptions, EmbeddingOptions, IngestOptions, RedisOptions,
                               resolve_connection)
from rag_core.chunking import ChunkFn, ChunkingConfig
from rag_core.dedupe import DeduplicateById, Keep
from rag_core.documents import FieldMap
from rag_core.embeddings import (DEFAULT_BUILD_BACKEND, EmbeddingConfig, check_comparable, describe,
                                 embedding_transform, resolve_embedding_model)
from rag_core.errors import ConfigError, RedisUnavailableError
from rag_core.ingestion import WRITE_RETRY, MergeSummaries, RedisVectorWriterConfig
from rag_core.publishing import PublishFn
from rag_core.readers import ReadDocuments
from rag_core.reuse import REUSED, LookUpStoredVectors, ReuseSource, plan_reuse, reuse_line
from rag_core.sinks import DEAD_LETTER, WriteDeadLetters, home_dead_letter_path
from rag_core.store.catalog import IndexCatalog
from rag_core.store.connection import RedisConnection
from rag_core.store.lease import BuildLease
from rag_core.store.schema import IndexLayout, VectorIndexSpec, new_version_id, validate_index_name
from rag_core.validation import check_int, check_number

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestPlan:
    """Everything the driver decided before the pipeline runs."""

    connection: RedisConnection
    layout: IndexLayout
    mode: BuildMode  # UPSERT writes into layout, the live version
    embedding: EmbeddingConfig
    chunking: ChunkingConfig
    dead_letter_path: str
    reuse: ReuseSource | None = None  # the live version whose vectors this build may copy
    reuse_note: str = ""  # why reuse is off, for the summary
    lease: BuildLease | None = None  # held from planning until the run ends


def plan_ingest(options: PipelineOptions) -> IngestPlan:
    """Validate flags, reach Redis, and register the version this run writes."""
    from apache_beam.io.filesystems import FileSystems

    common = options.view_as(CommonOptions)
    opts = options.view_as(IngestOptions)
    missing = [flag for flag, value in (("--input", common.input), ("--index", common.index)) if not value]
    if missing:
        raise ConfigError(f"beam-rag ingest needs {' and '.join(missing)}")
    alias = validate_index_name(common.index)
    mode = BuildMode(opts.mode)
    check_number("--max-shrink", opts.max_shrink, minimum=0, maximum=1)
    if opts.delete_missing and mode is not BuildMode.UPSERT:
        raise ConfigError("--delete-missing is for --mode upsert (a rebuild already holds exactly the input)")
    check_int("--keep-versions", opts.keep_versions, minimum=0)
    check_int("--write-max-retries", opts.write_max_retries, minimum=0)
    check_number("--wait-for-lock", opts.wait_for_lock, minimum=0)
    if not FileSystems.match([common.input])[0].metadata_list:
        raise ConfigError(f"No files match --input {common.input!r}")
    eopts = options.view_as(EmbeddingOptions)
    embedding = EmbeddingConfig(backend=eopts.embedding_backend or DEFAULT_BUILD_BACKEND,
                                batch_size=eopts.embedding_batch_size,
                                **({"model": eopts.embedding_model} if eopts.embedding_model else {}))
    check_int("--max-chunks-per-doc", opts.max_chunks_per_doc, minimum=0)
    chunking = ChunkingConfig(max_tokens=opts.chunk_tokens, overlap_tokens=opts.chunk_overlap,
                              max_chunks=opts.max_chunks_per_doc or None)
    connection = resolve_connection(options)
    import redis

    connection.check()  # fails in seconds, naming the URL, if Redis is down or refuses us
    client = connection.client()
    lease: BuildLease | None = None
    try:
        catalog = IndexCatalog(client, alias)
        fresh = IndexLayout(alias, new_version_id())
        # Take the lease before reading the live version: an upsert that waited for a rebuild
        # must write into the version that rebuild published, never into one it pruned.
        named = catalog.current_index() if mode is BuildMode.UPSERT else None
        lease = BuildLease(connection.client(), alias, named or fresh.index_name).acquire(opts.wait_for_lock)
        live = catalog.current_index()
        live_record = catalog.get(IndexLayout.from_index_name(live).version) if live is not None else None
        if mode is BuildMode.UPSERT and live_record is not None and not eopts.embedding_backend:
            # an upsert adds to the live version: its backend, not the build default
            embedding = replace(embedding, backend=EmbeddingConfig.from_description(live_record.embedding).backend)
        described = describe(embedding)
        reuse, reuse_note = plan_reuse(live_record.embedding if live_record else None, described,
                                       enabled=opts.reuse, index=live or "",
                                       prefix=live_record.prefix if live_record else "")
        if mode is BuildMode.UPSERT and live is not None:
            record = catalog.current()
            check_comparable(record.embedding, described, alias)
            layout = IndexLayout.from_index_name(live)
        else:
            if mode is BuildMode.UPSERT:
                _LOG.info("Index %r does not exist yet: building its first version", alias)
            layout = fresh
            spec = VectorIndexSpec(dim=described["dimension"], algorithm=opts.index_type, hnsw_m=opts.hnsw_m,
                                   hnsw_ef_construction=opts.hnsw_ef_construction, hnsw_ef_runtime=opts.ef_runtime)
            catalog.register_build(layout, described, spec)
            mode = BuildMode.REBUILD
    except BaseException as exc:
        if lease is not None:
            _release(lease)
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            raise RedisUnavailableError(
                f"Redis at {connection.safe_url} stopped answering while planning the build: "
                f"{type(exc).__name__}") from None
        raise
    finally:
        client.close()
    return IngestPlan(connection, layout, mode, embedding, chunking,
                      common.dead_letter or home_dead_letter_path(f"{layout.alias}-{layout.version}"),
                      reuse, reuse_note, lease)


def _release(lease: BuildLease) -> None:
    """Give the build lease back and close its client (an unreachable Redis lets it expire)."""
    try:
        lease.release()
    except Exception as exc:  # noqa: BLE001 - it expires by itself
        _LOG.warning("Releasing the build lease of %s failed (%s); it expires by itself", lease.alias,
                     type(exc).__name__)
    finally:
        lease.client.close()


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions, plan: IngestPlan) -> None:
    """Add the build steps to ``pipeline``."""
    common = options.view_as(CommonOptions)
    opts = options.view_as(IngestOptions)
    fields = FieldMap(id_field=opts.id_field, text_field=opts.text_field, title_field=opts.title_field)
    read = pipeline | "Read" >> ReadDocuments(common.input, opts.format, fields, opts.max_doc_bytes)
    unique = read.documents | "Dedupe" >> DeduplicateById(Keep.LAST)  # a later line supersedes
    chunked = unique.unique | "Chunk" >> beam.ParDo(
        ChunkFn(resolve_embedding_model(plan.embedding.model), plan.chunking)).with_outputs(
            DEAD_LETTER, main="chunks")
    looked_up = chunked.chunks | "Reuse" >> LookUpStoredVectors(plan.connection, plan.reuse)
    writer = RedisVectorWriterConfig(connection=plan.connection, key_prefix=plan.layout.prefix,
                                     mode=plan.mode.value, batch_size=opts.write_batch_size,
                                     retry=WRITE_RETRY.with_max_retries(opts.write_max_retries))
    # One writer per branch, each fused with what feeds it: a Flatten before a single writer
    # is a stage boundary on the DirectRunner, which held every embedded chunk in memory and
    # wrote nothing until the last one was embedded.
    written = ((looked_up.misses | "Embed" >> embedding_transform(plan.embedding)
                | "Write" >> writer.create_write_transform()),
               looked_up[REUSED] | "WriteReused" >> writer.create_write_transform())
    side: dict[str, Any] = {}
    if opts.delete_missing and plan.mode is BuildMode.UPSERT:
        # Duplicates are no unknown input (their id is kept); a record that failed to read or chunk is.
        side["input_ids"] = beam.pvalue.AsList(unique.unique | "InputIds" >> beam.Map(lambda doc: doc.id))
        side["dead_letters"] = beam.pvalue.AsSingleton(
            (read[DEAD_LETTER], chunked[DEAD_LETTER]) | "UnknownInput" >> beam.Flatten()
            | "CountUnknown" >> beam.combiners.Count.Globally())
    (written
     | "Written" >> beam.Flatten()
     | "Total" >> beam.CombineGlobally(MergeSummaries())
     | "Publish" >> beam.ParDo(PublishFn(plan.connection, plan.layout, plan.mode is BuildMode.REBUILD,
                                         opts.max_shrink, opts.keep_versions, opts.publish_timeout,
                                         plan.lease.identity if plan.lease else None,
                                         delete_missing=bool(side), dead_letter_path=plan.dead_letter_path),
                               **side))
    ((read[DEAD_LETTER], unique[DEAD_LETTER], chunked[DEAD_LETTER])
     | "WriteDeadLetters" >> WriteDeadLetters(plan.dead_letter_path, "documents_dead_lettered"))


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Build (or upsert into) a knowledge base; returns the run summary."""
    options = PipelineOptions(list(argv) if argv is not None else None)
    plan = plan_ingest(options)
    folder = os.path.dirname(plan.dead_letter_path)
    if "://" not in plan.dead_letter_path and folder:
        os.makedirs(folder, exist_ok=True)
    lease = plan.lease
    try:
        if lease is not None:
            lease.start_renewing(plan.connection.client)
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, options, plan)
        common = options.view_as(CommonOptions)
        fmt = options.view_as(IngestOptions).format
        with live(options, Track("beam-rag ingest", "documents_chunked", "docs",
                                 total=lambda: count_records(common.input, fmt),
                                 also={"chunks written": "chunks_written"})):
            result = pipeline.run()
            result.wait_until_finish()
    finally:
        if lease is not None:
            _release(lease)
    counters = read_metrics(result)
    reused, embedded = counters.get("chunks_reused", 0), counters.get("chunks_embedded", 0)
    line = reuse_line(reused, reused + embedded, plan.reuse, plan.reuse_note)
    progress("beam-rag ingest", line)
    return {
        "index": plan.layout.alias,
        "version": plan.layout.index_name,
        "mode": plan.mode.value,
        "documents_read": counters.get("documents_read"),
        "documents_indexed": counters.get("documents_indexed"),
        "documents_dead_lettered": counters.get("documents_dead_lettered", 0),
        "documents_deleted": counters.get("documents_deleted", 0),
        "chunks_written": counters.get("chunks_written"),
        "chunks_embedded": embedded,
        "chunks_reused": reused,
        "reused_from": plan.reuse.index if plan.reuse else None,
        "reuse": line,
        "documents_truncated": counters.get("documents_truncated", 0),
        "chunks_dropped": counters.get("chunks_dropped", 0),
        "bytes_read": counters.get("bytes_read"),
        "dead_letter": plan.dead_letter_path,
    }


COMMAND = PipelineCommand("beam-rag ingest", __doc__.split("\n\n", 1)[0],
                          (CommonOptions, IngestOptions, RedisOptions, EmbeddingOptions), run)


if __name__ == "__main__":
    sys.exit(COMMAND.main())
