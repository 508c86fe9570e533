"""Retrieval quality on a benchmark dataset, measured through the real pipelines.

    beam-rag eval --dataset scifact --data-dir DIR [--retrieval dense|hybrid] [--split test|train]
        [--index-type flat|hnsw] [--output-dir DIR] [--limit-docs N --limit-queries N]
        [--redis-url URL] [--reuse-index NAME] [--keep-index]

1. Build: the corpus (document = title + " " + abstract) is written as JSONL to a
   temporary folder and indexed by the real build pipeline (:func:`pipelines.ingest.run`)
   into a fresh index (dropped afterwards unless ``--keep-index``). ``--reuse-index``
   skips this and searches an index built earlier from the same corpus.
2. Retrieve: one Beam pipeline embeds the claims with the index's own model (the query
   pipeline's ``embedding_transform``) and sends them through Beam's ``Enrichment``
   with :class:`~rag_core.enrichment.RedisVectorSearchHandler`, once per retrieval mode
   (the requested one and, unless ``--no-compare``, the other). No generation.
3. Score: a document scores as its best chunk (``--depth-chunks`` chunks are
   retrieved and deduplicated into documents), relevance is binary, metrics as BEIR
   and MTEB compute them (:mod:`rag_core.evaluation.metrics`).

Writes ``report.md``, ``recall.png`` (recall@k, dense vs hybrid) and ``runs.json``
to ``--output-dir`` and returns (``beam-rag eval`` prints, as its last line) a JSON
object with the requested mode's ``ndcg@10``, ``recall@10``, ``recall@100``,
``mrr@10``, ``queries``, ``docs``, ``queries_per_s`` (Redis round-trip time of the
retrieval step only), and the other mode's metrics under ``compare``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pipelines.command import progress, run_as_command
from rag_core.store.catalog import drop_knowledge_base
from pipelines.options import EMBEDDING_BACKENDS, resolve_connection
from rag_core.enrichment import RetrievalMode
from rag_core.errors import ConfigError
from rag_core.validation import check_positive_int

_LOG = logging.getLogger(__name__)

DATASETS = ("scifact", "squad2")
MODES = tuple(m.value for m in RetrievalMode)
DEFAULT_DEPTH_CHUNKS = 300  # ~3 chunks per document: enough for recall@100 over documents


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="beam-rag eval", description="Retrieval quality on a benchmark dataset")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-dir", dest="data_dir", default=None, help="scifact: folder with the dataset's files (required)")
    # squad2 (answers end to end) is pipelines.squad_eval: `beam-rag eval --dataset squad2 --help`.
    p.add_argument("--data-file", dest="data_file", default=None, help="squad2: the SQuAD v2.0 JSON file")
    p.add_argument("--sample", type=int, default=None, help="squad2: N questions, a fixed seeded sample")
    p.add_argument("--every", type=int, default=None, help="squad2: every K-th question (default 10)")
    p.add_argument("--retrieval", default="dense", choices=MODES)
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="evaluate only --retrieval (default: the other mode too, for the report and plot)")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--index-type", dest="index_type", default="flat", choices=["flat", "hnsw"])
    p.add_argument("--output-dir", dest="output_dir", default=None,
                   help="where report.md, recall.png and runs.json go (default: a new temporary folder)")
    p.add_argument("--limit-docs", dest="limit_docs", type=int, default=0,
                   help="index only N documents: the relevant ones of the evaluated claims first")
    p.add_argument("--limit-queries", dest="limit_queries", type=int, default=0,
                   help="evaluate only the first N claims that have relevant documents")
    p.add_argument("--redis-url", dest="redis_url", default=None)
    p.add_argument("--reuse-index", dest="reuse_index", default=None,
                   help="search this existing index (built from the same corpus) instead of building one")
    p.add_argument("--keep-index", dest="keep_index", action="store_true",
                   help="keep the index this run builds (its name is in the output)")
    p.add_argument("--depth-chunks", dest="depth_chunks", type=int, default=DEFAULT_DEPTH_CHUNKS,
                   help="chunks retrieved per claim before deduplication into documents")
    p.add_argument("--search-ef-runtime", dest="search_ef_runtime", type=int, default=None,
                   help="HNSW EF_RUNTIME for the searches (default: the handler's)")
    p.add_argument("--retrieval-batch-size", dest="retrieval_batch_size", type=int, default=32)
    # Forwarded to the build (pipelines.ingest).
    p.add_argument("--chunk-tokens", dest="chunk_tokens", type=int, default=None)
    p.add_argument("--chunk-overlap", dest="chunk_overlap", type=int, default=None)
    p.add_argument("--max-chunks-per-doc", dest="max_chunks_per_doc", type=int, default=None)
    p.add_argument("--hnsw-m", dest="hnsw_m", type=int, default=None)
    p.add_argument("--hnsw-ef-construction", dest="hnsw_ef_construction", type=int, default=None)
    p.add_argument("--ef-runtime", dest="ef_runtime", type=int, default=None)
    p.add_argument("--embedding-backend", dest="embedding_backend", default=None, choices=EMBEDDING_BACKENDS)
    p.add_argument("--embedding-batch-size", dest="embedding_batch_size", type=int, default=None)
    return p


@dataclass(frozen=True)
class EvalSet:
    """What is indexed and what is asked."""

    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, set[str]]


def select(corpus: dict[str, tuple[str, str]], queries: dict[str, str], qrels: dict[str, set[str]],
           limit_docs: int = 0, limit_queries: int = 0) -> EvalSet:
    """The first ``limit_queries`` queries with relevant documents (file order), and a corpus
    of ``limit_docs`` documents: every relevant document of those queries first, then others
    in corpus order. Relevant documents missing from the corpus are dropped from ``qrels``.

    >>> s = select({"1": ("", "a"), "2": ("", "b"), "3": ("", "c")}, {"q": "x", "r": "y"},
    ...            {"q": {"3"}, "r": {"1"}}, limit_docs=2, limit_queries=1)
    >>> sorted(s.corpus), list(s.queries)
    (['1', '3'], ['q'])
    """
    if limit_docs < 0 or limit_queries < 0:
        raise ConfigError("--limit-docs and --limit-queries must be >= 0")
    chosen = [q for q in queries if qrels.get(q)]
    if limit_queries:
        chosen = chosen[:limit_queries]
    if limit_docs:
        needed = [d for q in chosen for d in sorted(qrels[q]) if d in corpus]
        needed = list(dict.fromkeys(needed))
        if len(needed) > limit_docs:
            raise ConfigError(f"--limit-docs {limit_docs} is smaller than the {len(needed)} relevant documents "
                              "of the chosen queries: raise it or lower --limit-queries")
        keep = set(needed)
        for doc_id in corpus:
            if len(keep) >= limit_docs:
                break
            keep.add(doc_id)
        corpus = {d: v for d, v in corpus.items() if d in keep}
    rels = {q: {d for d in qrels[q] if d in corpus} for q in chosen}
    rels = {q: r for q, r in rels.items() if r}
    return EvalSet(corpus, {q: queries[q] for q in rels}, rels)


def load_dataset(name: str, data_dir: str, split: str) -> EvalSet:
    if name != "scifact":
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    from rag_core.evaluation.scifact import load_scifact

    data = load_scifact(data_dir, split)
    return EvalSet(data.corpus, data.queries, data.qrels)


def ingest_args(args: argparse.Namespace) -> list[str]:
    """The build flags this eval forwards to ``pipelines.ingest``."""
    out = ["--index-type", args.index_type]
    for flag, value in (("--chunk-tokens", args.chunk_tokens), ("--chunk-overlap", args.chunk_overlap),
                        ("--max-chunks-per-doc", args.max_chunks_per_doc),
                        ("--hnsw-m", args.hnsw_m), ("--hnsw-ef-construction", args.hnsw_ef_construction),
                        ("--ef-runtime", args.ef_runtime), ("--embedding-backend", args.embedding_backend),
                        ("--embedding-batch-size", args.embedding_batch_size)):
        if value is not None:
            out += [flag, str(value)]
    return out


def build_index(evalset: EvalSet, alias: str, redis_flags: Sequence[str], work: Path,
                extra: Sequence[str]) -> dict[str, Any]:
    """Write the corpus as JSONL and index it with the real build pipeline.

    ``redis_flags`` is ``["--redis-url", URL]`` as the user gave it (credentials and
    all), or empty to resolve Redis exactly as ``ingest`` does.
    """
    from pipelines import ingest

    corpus = work / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as fh:
        for doc_id, (title, text) in evalset.corpus.items():
            fh.write(json.dumps({"id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    return ingest.run(["--input", str(corpus), "--index", alias, *redis_flags,
                       "--dead-letter", str(work / "dead-letters.jsonl"), *extra])


@dataclass
class ModeRun:
    """One retrieval mode's results: per query, the ranked chunk and document ids."""

    chunks: dict[str, list[str]] = field(default_factory=dict)
    docs: dict[str, list[str]] = field(default_factory=dict)
    redis_seconds: float = 0.0  # summed Redis round trips, each batch counted once


def retrieve(connection: Any, index: str, queries: dict[str, str], modes: Sequence[str], depth_chunks: int,
             work: Path, ef_runtime: int | None = None, batch_size: int = 32) -> dict[str, ModeRun]:
    """Run the claims through the query side's Enrichment step, once per mode, in one Beam pipeline.

    ``index`` is an alias or a pinned version (``alias__v...``); claims are embedded once
    with the index's recorded model.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.transforms.enrichment import Enrichment

    from rag_core.embeddings import embedding_transform
    from rag_core.enrichment import RedisVectorSearchHandler, VectorSearchParameters, join_hits, search_parameters
    from rag_core.embeddings import for_index
    from rag_core.store.catalog import IndexCatalog
    from rag_core.store.schema import IndexLayout
    from rag_core.types import Chunk, Content

    alias, pinned = IndexLayout.parse(index)
    client = connection.client()
    try:
        catalog = IndexCatalog(client, alias)
        record = catalog.current() if pinned is None else catalog.get(pinned.version)
        if record is None:
            raise ConfigError(f"index {index!r} is not in the catalog")
    finally:
        client.close()
    embedding = for_index(record.embedding, record.index)
    claims = [Chunk(content=Content(text=text), id=qid, metadata={"question": text})
              for qid, text in queries.items()]
    options = PipelineOptions([])
    outputs = {mode: work / f"hits-{mode}.jsonl" for mode in modes}
    with beam.Pipeline(options=options) as pipeline:
        embedded = (pipeline
                    | "Claims" >> beam.Create(claims)
                    | "Embed" >> embedding_transform(embedding))
        for mode in modes:
            handler = RedisVectorSearchHandler(connection, search_parameters(mode, VectorSearchParameters(
                index=record.index, top_k=depth_chunks, return_text=False, ef_runtime=ef_runtime,
                expected_embedding={"model": record.embedding.get("model"),
                                    "dimension": record.embedding.get("dimension")})), max_batch_size=batch_size)
            _ = (embedded
                 | f"Retrieve[{mode}]" >> Enrichment(handler, join_fn=join_hits,
                                                     timeout=handler.worst_case_seconds())
                 | f"ToRow[{mode}]" >> beam.Map(_hits_row)
                 | f"Write[{mode}]" >> beam.io.WriteToText(str(outputs[mode]), shard_name_template="",
                                                           num_shards=1))
    results: dict[str, ModeRun] = {}
    for mode, path in outputs.items():
        run = ModeRun()
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            run.chunks[row["id"]] = row["chunks"]
            run.docs[row["id"]] = row["docs"]
            run.redis_seconds += row["latency_ms"] / 1000.0 / max(1, row["batch_size"])
        results[mode] = run
    return results


def _hits_row(chunk: Any) -> str:
    from rag_core.answers import retrieved_row
    from rag_core.enrichment import RETRIEVAL_KEY

    sources = retrieved_row(chunk).sources
    info = chunk.metadata.get(RETRIEVAL_KEY, {})
    return json.dumps({"id": chunk.id, "chunks": [s.chunk_id for s in sources], "docs": [s.doc_id for s in sources],
                       "latency_ms": info.get("latency_ms", 0.0), "batch_size": info.get("batch_size", 1)})


def score(run: ModeRun, qrels: dict[str, set[str]], depth_docs: int = 100) -> dict[str, Any]:
    """BEIR metrics (documents deduplicated at their best chunk) plus retrieval speed."""
    from rag_core.evaluation.metrics import dedupe_ranking, evaluate

    metrics: dict[str, Any] = {k: round(v, 4) if isinstance(v, float) else v
                               for k, v in evaluate(run.docs, qrels).items()}
    short = sum(1 for q in qrels if len(dedupe_ranking(run.docs.get(q, []))) < depth_docs)
    metrics["queries_short_of_depth"] = short
    metrics["queries_per_s"] = round(len(run.docs) / run.redis_seconds, 1) if run.redis_seconds else None
    return metrics


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``beam-rag eval``: returns the summary (see the module docstring)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from rag_core.evaluation.report import (
        SCIFACT_ANCHORS, markdown_report, plot_recall_curves, recall_curve,
    )
    from rag_core.store.catalog import IndexCatalog

    from pipelines import squad_eval

    argv = list(sys.argv[1:] if argv is None else argv)
    if squad_eval.requested(argv):
        return squad_eval.run(argv)
    args = build_parser().parse_args(argv)
    check_positive_int("--depth-chunks", args.depth_chunks)
    if not args.data_dir:
        raise ConfigError(f"--data-dir is required for --dataset {args.dataset}")
    started = time.perf_counter()
    evalset = load_dataset(args.dataset, args.data_dir, args.split)
    evalset = select(evalset.corpus, evalset.queries, evalset.qrels, args.limit_docs, args.limit_queries)
    if not evalset.queries:
        raise ConfigError("no query with a relevant document is left to evaluate")
    out_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="beam-rag-eval-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    redis_flags = ["--redis-url", args.redis_url] if args.redis_url else []
    connection = resolve_connection(PipelineOptions(redis_flags))
    connection.check()
    alias = args.reuse_index or f"eval_{args.dataset}_{uuid.uuid4().hex[:10]}"
    summary: dict[str, Any] = {"dataset": args.dataset, "split": args.split, "retrieval": args.retrieval}
    with tempfile.TemporaryDirectory(prefix="beam-rag-eval-") as tmp:
        work = Path(tmp)
        built = False
        try:
            if args.reuse_index is None:
                _progress(f"indexing {len(evalset.corpus)} documents into {alias} ({args.index_type})")
                t0 = time.perf_counter()
                build = build_index(evalset, alias, redis_flags, work, ingest_args(args))
                built = True
                summary["ingest_s"] = round(time.perf_counter() - t0, 1)
                summary["documents_indexed"] = build.get("documents_indexed")
            client = connection.client()
            try:
                record = IndexCatalog(client, alias).current()
            finally:
                client.close()
            modes = [args.retrieval] + ([m for m in MODES if m != args.retrieval] if args.compare else [])
            _progress(f"retrieving {len(evalset.queries)} claims ({', '.join(modes)}) from {record.index}")
            t0 = time.perf_counter()
            runs = retrieve(connection, record.index, evalset.queries, modes, args.depth_chunks, work,
                            args.search_ef_runtime, args.retrieval_batch_size)
            summary["retrieval_pipeline_s"] = round(time.perf_counter() - t0, 1)
        finally:
            if built and not args.keep_index:
                drop_knowledge_base(connection, alias)
    results = {mode: score(r, evalset.qrels) for mode, r in runs.items()}
    curves = {mode: recall_curve(r.docs, evalset.qrels) for mode, r in runs.items()}
    primary = results[args.retrieval]
    summary.update({
        "index": record.index if args.keep_index or args.reuse_index else None,
        "index_type": record.spec.get("algorithm"),
        "docs": len(evalset.corpus),
        "chunks": record.chunks,
        "depth_chunks": args.depth_chunks,
    })
    plot = plot_recall_curves(curves, out_dir / "recall.png",
                              f"{args.dataset} {args.split}: recall@k ({len(evalset.queries)} queries)")
    anchors = SCIFACT_ANCHORS if args.dataset == "scifact" and args.split == "test" and not args.limit_docs else {}
    report = out_dir / "report.md"
    report.write_text(markdown_report(summary, results, curves, anchors, plot.name), encoding="utf-8")
    (out_dir / "runs.json").write_text(json.dumps({m: r.docs for m, r in runs.items()}), encoding="utf-8")
    summary.update(primary)
    summary["compare"] = {m: v for m, v in results.items() if m != args.retrieval}
    summary.update({"report": str(report), "plot": str(plot), "seconds": round(time.perf_counter() - started, 1)})
    return summary


def _progress(message: str) -> None:
    progress("beam-rag eval", message)


def main(argv: Sequence[str] | None = None) -> int:
    return run_as_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())

