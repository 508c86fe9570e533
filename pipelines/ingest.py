"""The knowledge-base build: read → validate → dedupe → chunk → embed → write → publish.

    beam-rag ingest --input 'docs/*.jsonl' --index docs [--mode rebuild|upsert] [Beam flags]
    python -m pipelines.ingest --input ... --index ...

``rebuild`` (the scheduled job's default) writes a new index version under its
own key prefix and, only once every write landed and Redis has indexed it all,
points the alias at it in one FT.ALIASUPDATE. ``upsert`` writes into the live
version idempotently.
"""

from __future__ import annotations

if __name__ == "__main__":
    # `python -m pipelines.ingest`: run the importable module instead, so its DoFns and
    # element types pickle as pipelines.ingest.X (worker processes cannot import
    # __main__.X) and its options class is registered with Beam only once.
    import sys as _sys

    from pipelines.ingest import main as _main

    _sys.exit(_main())

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from rag_core.chunking import Chunker, ChunkingConfig, hf_token_spans
from rag_core.documents import DEFAULT_MAX_DOC_BYTES, FieldMap
from rag_core.embeddings import EmbeddingConfig, embedding_transform, resolve_embedding_model
from rag_core.errors import ConfigError, ModelMismatchError, RedisUnavailableError
from rag_core.ingestion import WRITE_RETRY, MergeSummaries, RedisVectorWriterConfig, WriteSummary
from rag_core.readers import DEAD_LETTER, FORMATS, DeduplicateById, ReadDocuments
from rag_core.store.catalog import IndexCatalog
from rag_core.store.connection import RedisConnection
from rag_core.store.schema import IndexLayout, VectorIndexSpec, new_version_id, validate_index_name
from rag_core.types import DeadLetter, Document
from pipelines.options import EmbeddingOptions, RedisOptions, resolve_connection

_LOG = logging.getLogger(__name__)


class IngestOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        # Not required=True: Beam parses every registered options class for every
        # pipeline, so a required flag here would break `query` in the same process.
        parser.add_argument("--input", default=None, help="file path or glob, local or gs:// (required)")
        parser.add_argument("--index", default=None, help="knowledge-base name, the alias queries use (required)")
        parser.add_argument("--format", default="auto", choices=list(FORMATS))
        parser.add_argument("--mode", default="rebuild", choices=["rebuild", "upsert"])
        parser.add_argument("--dead-letter", dest="dead_letter", default=None,
                            help="JSONL file for rejected records (default: under $BEAM_RAG_HOME/dead-letters)")
        parser.add_argument("--id-field", dest="id_field", default="id")
        parser.add_argument("--text-field", dest="text_field", default="text")
        parser.add_argument("--title-field", dest="title_field", default="title")
        parser.add_argument("--max-doc-bytes", dest="max_doc_bytes", type=int, default=DEFAULT_MAX_DOC_BYTES)
        parser.add_argument("--chunk-tokens", dest="chunk_tokens", type=int, default=256)
        parser.add_argument("--chunk-overlap", dest="chunk_overlap", type=int, default=32)
        parser.add_argument("--max-chunks-per-doc", dest="max_chunks_per_doc", type=int, default=0,
                            help="index only each document's first N chunks (0 = all); documents cut "
                                 "short are counted in the summary as documents_truncated")
        parser.add_argument("--index-type", dest="index_type", default="hnsw", choices=["hnsw", "flat"])
        parser.add_argument("--hnsw-m", dest="hnsw_m", type=int, default=16)
        parser.add_argument("--hnsw-ef-construction", dest="hnsw_ef_construction", type=int, default=200)
        parser.add_argument("--ef-runtime", dest="ef_runtime", type=int, default=100,
                            help="default HNSW EF_RUNTIME stored with the index (100: recall@10 against "
                                 "exact search 0.997 on SciFact, 64: 0.991; benchmarks/retrieval_quality.py)")
        parser.add_argument("--max-shrink", dest="max_shrink", type=float, default=0.5,
                            help="refuse to publish a rebuild that shrank by more than this fraction")
        parser.add_argument("--keep-versions", dest="keep_versions", type=int, default=1,
                            help="older versions kept for rollback")
        parser.add_argument("--publish-timeout", dest="publish_timeout", type=float, default=600.0)
        parser.add_argument("--write-batch-size", dest="write_batch_size", type=int, default=256)
        parser.add_argument("--write-max-retries", dest="write_max_retries", type=int, default=8,
                            help="retries of one batch of Redis writes (exponential backoff from 0.2 s, "
                                 "at most 5 s apart) before the job fails")


@dataclass(frozen=True)
class IngestPlan:
    """Everything the driver decided before the pipeline runs."""

    connection: RedisConnection
    layout: IndexLayout
    mode: str  # rebuild | upsert (into layout, the live version)
    embedding: EmbeddingConfig
    chunking: ChunkingConfig
    dead_letter_path: str


class _ChunkFn(beam.DoFn):
    def __init__(self, tokenizer_path: str, config: ChunkingConfig):
        self.tokenizer_path = tokenizer_path
        self.config = config
        self._chunks = Metrics.counter("beam_rag", "chunks")
        self._truncated = Metrics.counter("beam_rag", "documents_truncated")
        self._dropped = Metrics.counter("beam_rag", "chunks_dropped")

    def setup(self) -> None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
        self._chunker = Chunker(hf_token_spans(tokenizer), self.config)

    def process(self, doc: Document) -> Iterator[Any]:
        try:
            chunks = self._chunker(doc)
        except Exception as exc:  # a tokenizer failure on one document must not kill the job
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(
                doc.source, f"chunking failed: {type(exc).__name__}: {exc}", id=doc.id, stage="chunk"))
            return
        if not chunks:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(
                doc.source, "no text left to index after chunking", id=doc.id, stage="chunk"))
            return
        self._chunks.inc(len(chunks))
        dropped = chunks[0].metadata.get("chunks_dropped", 0)
        if dropped:
            self._truncated.inc()
            self._dropped.inc(dropped)
        yield from chunks


class _PublishFn(beam.DoFn):
    """Runs once, after every write: verify and publish (rebuild) or refresh counts (upsert)."""

    def __init__(self, plan: IngestPlan, max_shrink: float, keep_versions: int, timeout_s: float):
        self.plan = plan
        self.max_shrink = max_shrink
        self.keep_versions = keep_versions
        self.timeout_s = timeout_s
        self._indexed = Metrics.counter("beam_rag", "documents_indexed")

    def process(self, summary: WriteSummary) -> Iterator[dict[str, Any]]:
        import redis

        client = self.plan.connection.client()
        try:
            catalog = IndexCatalog(client, self.plan.layout.alias)
            version = self.plan.layout.version
            if self.plan.mode == "rebuild":
                result = catalog.publish(version, summary.chunks, summary.documents, summary.metadata_fields,
                                         self.max_shrink, self.keep_versions, self.timeout_s)
            else:
                record = catalog.get(version)
                assert record is not None
                catalog.ensure_index(record, summary.metadata_fields)
                result = catalog.record_upsert(version, summary.documents)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # After the client's own bounded retries. The alias switch is one atomic command:
            # either it happened or the previous version is still the one served.
            raise RedisUnavailableError(
                f"Publishing {self.plan.layout.index_name} in Redis at {self.plan.connection.safe_url} failed: "
                f"{type(exc).__name__}. Every chunk was written; rerun the build (the abandoned version "
                "is cleaned up when a later build publishes)") from None
        finally:
            client.close()
        self._indexed.inc(summary.documents)
        yield result


def default_dead_letter_path(layout: IndexLayout) -> str:
    from rag_core.store.local_server import default_home

    return str(default_home() / "dead-letters" / f"{layout.alias}-{layout.version}.jsonl")


def plan_ingest(options: PipelineOptions) -> IngestPlan:
    """Validate flags, reach Redis, and register the version this run writes."""
    from apache_beam.io.filesystems import FileSystems

    opts = options.view_as(IngestOptions)
    missing = [flag for flag, value in (("--input", opts.input), ("--index", opts.index)) if not value]
    if missing:
        raise ConfigError(f"beam-rag ingest needs {' and '.join(missing)}")
    alias = validate_index_name(opts.index)
    if opts.max_shrink < 0 or opts.max_shrink > 1:
        raise ConfigError("--max-shrink must be between 0 and 1")
    if opts.keep_versions < 0:
        raise ConfigError("--keep-versions must be >= 0")
    if opts.write_max_retries < 0:
        raise ConfigError("--write-max-retries must be >= 0")
    if not FileSystems.match([opts.input])[0].metadata_list:
        raise ConfigError(f"No files match --input {opts.input!r}")
    eopts = options.view_as(EmbeddingOptions)
    embedding = EmbeddingConfig(backend=eopts.embedding_backend, batch_size=eopts.embedding_batch_size,
                                **({"model": eopts.embedding_model} if eopts.embedding_model else {}))
    if opts.max_chunks_per_doc < 0:
        raise ConfigError("--max-chunks-per-doc must be >= 0 (0 = every chunk)")
    chunking = ChunkingConfig(max_tokens=opts.chunk_tokens, overlap_tokens=opts.chunk_overlap,
                              max_chunks=opts.max_chunks_per_doc or None)
    connection = resolve_connection(options)
    import redis

    connection.check()  # fails in seconds, naming the URL, if Redis is down or refuses us
    client = connection.client()
    try:
        catalog = IndexCatalog(client, alias)
        live = catalog.current_index()
        described = embedding.describe()
        if opts.mode == "upsert" and live is not None:
            record = catalog.current()
            ensure_compatible(record.embedding, described, alias)
            layout = IndexLayout.from_index_name(live)
            mode = "upsert"
        else:
            if opts.mode == "upsert":
                _LOG.info("Index %r does not exist yet: building its first version", alias)
            layout = IndexLayout(alias, new_version_id())
            spec = VectorIndexSpec(dim=described["dimension"], algorithm=opts.index_type, hnsw_m=opts.hnsw_m,
                                   hnsw_ef_construction=opts.hnsw_ef_construction, hnsw_ef_runtime=opts.ef_runtime)
            catalog.register_build(layout, described, spec)
            mode = "rebuild"
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailableError(
            f"Redis at {connection.safe_url} stopped answering while planning the build: "
            f"{type(exc).__name__}") from None
    finally:
        client.close()
    return IngestPlan(connection, layout, mode, embedding, chunking,
                      opts.dead_letter or default_dead_letter_path(layout))


def ensure_compatible(stored: dict[str, Any], requested: dict[str, Any], alias: str) -> None:
    """Refuse to mix vectors from different models, dimensions or backend families."""
    for key in ("model", "dimension", "backend_family"):
        if key in stored and key in requested and stored[key] != requested[key]:
            raise ModelMismatchError(
                f"Index {alias!r} was built with {key} {stored[key]!r}, but this run uses {requested[key]!r}: "
                f"vectors would not be comparable. Use the same embedding settings, or rebuild the index.")


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions, plan: IngestPlan) -> None:
    opts = options.view_as(IngestOptions)
    fields = FieldMap(id_field=opts.id_field, text_field=opts.text_field, title_field=opts.title_field)
    read = pipeline | "Read" >> ReadDocuments(opts.input, opts.format, fields, opts.max_doc_bytes)
    unique = read.documents | "Dedupe" >> DeduplicateById()
    chunked = unique.documents | "Chunk" >> beam.ParDo(
        _ChunkFn(resolve_embedding_model(plan.embedding.model), plan.chunking)).with_outputs(
            DEAD_LETTER, main="chunks")
    embedded = chunked.chunks | "Embed" >> embedding_transform(plan.embedding)
    writer = RedisVectorWriterConfig(connection=plan.connection, key_prefix=plan.layout.prefix, mode=plan.mode,
                                     batch_size=opts.write_batch_size,
                                     retry=WRITE_RETRY.with_max_retries(opts.write_max_retries))
    (embedded
     | "Write" >> writer.create_write_transform()
     | "Total" >> beam.CombineGlobally(MergeSummaries())
     | "Publish" >> beam.ParDo(_PublishFn(plan, opts.max_shrink, opts.keep_versions, opts.publish_timeout)))
    dead = Metrics.counter("beam_rag", "documents_dead_lettered")

    def to_line(letter: DeadLetter) -> str:
        dead.inc()
        return letter.to_json()

    ((read[DEAD_LETTER], unique[DEAD_LETTER], chunked[DEAD_LETTER])
     | "AllDeadLetters" >> beam.Flatten()
     | "DeadLetterJson" >> beam.Map(to_line)
     | "WriteDeadLetters" >> beam.io.WriteToText(plan.dead_letter_path, shard_name_template="", num_shards=1))


def _counters(result: Any) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    try:
        counters = result.metrics().query(MetricsFilter().with_namespace("beam_rag"))["counters"]
    except Exception:  # some runners do not report metrics to the driver
        return {}
    out: dict[str, int] = {}
    for c in counters:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return out


def run(argv: Sequence[str] | None = None, save_main_session: bool = False) -> dict[str, Any]:
    """Build (or upsert into) a knowledge base; returns the run summary."""
    options = PipelineOptions(list(argv) if argv is not None else None)
    plan = plan_ingest(options)
    os.makedirs(os.path.dirname(plan.dead_letter_path) or ".", exist_ok=True) if "://" not in plan.dead_letter_path else None
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options, plan)
    result = pipeline.run()
    result.wait_until_finish()
    counters = _counters(result)
    summary: dict[str, Any] = {
        "index": plan.layout.alias,
        "version": plan.layout.index_name,
        "mode": plan.mode,
        "documents_read": counters.get("documents_read"),
        "documents_indexed": counters.get("documents_indexed"),
        "documents_dead_lettered": counters.get("documents_dead_lettered", 0),
        "chunks_written": counters.get("chunks_written"),
        "documents_truncated": counters.get("documents_truncated", 0),
        "chunks_dropped": counters.get("chunks_dropped", 0),
        "bytes_read": counters.get("bytes_read"),
        "dead_letter": plan.dead_letter_path,
    }
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(run(argv)))

