"""Retrieval quality and speed on SciFact: dense vs hybrid, FLAT vs HNSW.

Builds the SciFact corpus ONCE per index type with the real ingest pipeline (or
reuses indexes built earlier: ``--reuse-flat NAME --reuse-hnsw NAME``), then runs
the claims through the query side's Enrichment step (``pipelines.evaluate.retrieve``)
and prints, per index type and retrieval mode:

- nDCG@10, recall@10, recall@100, MRR@10 (documents deduplicated at their best chunk,
  ``--depth-chunks`` chunks per claim);
- queries/s of the retrieval step: claims / summed Redis round-trip time (batches
  of ``--batch-size``), at the eval depth and at ``top_k=10`` (what a RAG query asks);
- HNSW against FLAT: recall@10 of the chunk ids (dense, top_k=10, the handler's
  default EF_RUNTIME, and each ``--ef-sweep`` value);
- index memory from FT.INFO (the vector index included: RediSearch 2.10 leaves it out of
  ``total_index_memory_sz_mb``), per document and per chunk, and the chunk hashes' own
  memory (text, metadata and the vector bytes).

The last line printed is one JSON object. Timings are wall-clock on a shared machine:
compare them within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.evaluate import build_index, load_dataset, retrieve, score  # noqa: E402
from rag_core.evaluation.report import overlap_at_k  # noqa: E402
from rag_core.store.catalog import IndexCatalog  # noqa: E402
from rag_core.store.info import ft_info  # noqa: E402
from rag_core.store.connection import RedisConnection  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
MEMORY_FIELDS = ("inverted_sz_mb", "vector_index_sz_mb", "offset_vectors_sz_mb", "doc_table_size_mb",
                 "sortable_values_size_mb", "key_table_size_mb", "tag_overhead_sz_mb", "text_overhead_sz_mb",
                 "total_index_memory_sz_mb", "geoshapes_sz_mb")


def index_memory(client: Any, index: str, prefix: str, documents: int, sample: int = 200) -> dict[str, Any]:
    """FT.INFO memory figures (MB) and the total per document / per chunk (KB), plus the
    chunk hashes themselves (MEMORY USAGE of a sample of keys, scaled up)."""
    info = ft_info(client, index) or {}
    mb = {k: round(float(info[k]), 3) for k in MEMORY_FIELDS if k in info}
    total = mb.get("total_index_memory_sz_mb")
    if total is None:  # older modules: sum the parts
        total = sum(v for k, v in mb.items() if k != "total_index_memory_sz_mb")
    # RediSearch 2.10 leaves the vector index out of total_index_memory_sz_mb
    total_with_vectors = total + mb.get("vector_index_sz_mb", 0.0)
    chunks = int(info.get("num_docs", 0))
    keys = [k for _, k in zip(range(sample), client.scan_iter(match=prefix + "*", count=500))]
    hash_bytes = sum(int(client.memory_usage(k, samples=0) or 0) for k in keys) / max(1, len(keys)) * chunks
    return {"ft_info_mb": mb, "hashes_mb": round(hash_bytes / 2**20, 2),
            "hashes_kb_per_doc": round(hash_bytes / 1024 / max(1, documents), 2), "index_mb": round(total_with_vectors, 2),
            "index_kb_per_doc": round(total_with_vectors * 1024 / max(1, documents), 2),
            "index_kb_per_chunk": round(total_with_vectors * 1024 / max(1, chunks), 2), "chunks": chunks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--split", default="test", choices=["test", "train"])
    parser.add_argument("--redis-url", default=None, help="default: a private embedded Redis in a temp folder")
    parser.add_argument("--reuse-flat", default=None, help="an existing FLAT index of the SciFact corpus")
    parser.add_argument("--reuse-hnsw", default=None, help="an existing HNSW index of the SciFact corpus")
    parser.add_argument("--index-types", default="flat,hnsw")
    parser.add_argument("--keep", action="store_true", help="keep the indexes this run builds")
    parser.add_argument("--depth-chunks", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ef-sweep", default="10,32,64,100,128", help="EF_RUNTIME values for HNSW vs FLAT recall@10")
    args = parser.parse_args()

    data = load_dataset("scifact", args.data_dir, args.split)
    queries = {q: t for q, t in data.queries.items() if data.qrels.get(q)}
    qrels = {q: data.qrels[q] for q in queries}
    server = None
    if args.redis_url is None:
        from rag_core.store.local_server import LocalRedis

        server = LocalRedis(require_password=False, data_dir=Path(tempfile.mkdtemp(prefix="beam-rag-bench-")) / "redis",
                            port=16390 + os.getpid() % 1000)
        server.start()
    url = args.redis_url or server.url  # type: ignore[union-attr]
    connection = RedisConnection.from_env(url)
    client = connection.client()
    out: dict[str, Any] = {"split": args.split, "queries": len(queries), "docs": len(data.corpus),
                           "depth_chunks": args.depth_chunks, "index": {}}
    built: list[str] = []
    top10: dict[str, dict[str, list[str]]] = {}
    try:
        for kind in args.index_types.split(","):
            reuse = {"flat": args.reuse_flat, "hnsw": args.reuse_hnsw}[kind]
            alias = reuse or f"bench_{kind}_{os.getpid()}"
            entry: dict[str, Any] = {}
            with tempfile.TemporaryDirectory(prefix="beam-rag-bench-") as tmp:
                work = Path(tmp)
                if reuse is None:
                    t0 = time.perf_counter()
                    build_index(data, alias, ["--redis-url", url], work, ["--index-type", kind])
                    built.append(alias)
                    entry["ingest_s"] = round(time.perf_counter() - t0, 1)
                record = IndexCatalog(client, alias).current()
                entry.update({"alias": alias, "index": record.index, "spec": {
                    k: record.spec.get(k) for k in ("algorithm", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_runtime")}})
                entry["memory"] = index_memory(client, record.index, record.prefix, len(data.corpus))
                runs = retrieve(connection, record.index, queries, ["dense", "hybrid"], args.depth_chunks, work,
                                batch_size=args.batch_size)
                for mode, run in runs.items():
                    entry[mode] = score(run, qrels)
                shallow = retrieve(connection, record.index, queries, ["dense", "hybrid"], 10, work,
                                   batch_size=args.batch_size)
                for mode, run in shallow.items():
                    entry[mode]["queries_per_s_top10"] = score(run, qrels)["queries_per_s"]
                top10[kind] = shallow["dense"].chunks
                if kind == "hnsw":
                    sweep = {}
                    for ef in [int(x) for x in args.ef_sweep.split(",") if x]:
                        r = retrieve(connection, record.index, queries, ["dense"], 10, work, ef_runtime=ef,
                                     batch_size=args.batch_size)["dense"]
                        sweep[ef] = {"chunks": r.chunks, "queries_per_s_top10": score(r, qrels)["queries_per_s"]}
                    entry["ef_sweep"] = sweep
            out["index"][kind] = entry
            print(json.dumps({kind: {k: v for k, v in entry.items() if k != "ef_sweep"}}), flush=True)
        if "flat" in top10 and "hnsw" in top10:
            hnsw = out["index"]["hnsw"]
            hnsw["recall@10_vs_flat_default_ef"] = round(overlap_at_k(top10["hnsw"], top10["flat"], 10), 4)
            hnsw["ef_sweep"] = {ef: {"recall@10_vs_flat": round(overlap_at_k(v["chunks"], top10["flat"], 10), 4),
                                     "queries_per_s_top10": v["queries_per_s_top10"]}
                                for ef, v in hnsw.get("ef_sweep", {}).items()}
        print(json.dumps(out))
    finally:
        if not args.keep:
            for alias in built:
                IndexCatalog(client, alias).drop()
        client.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
