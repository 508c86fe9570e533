"""Knowledge-base build memory: peak RSS must stay flat as the corpus grows.

Builds indexes of N short chunks (default 10k, 25k and 50k) with the real ingest
pipeline (DirectRunner), each size in a fresh subprocess, and reports the peak
resident memory of that subprocess and of everything it started. The corpus is
SciFact's abstracts split into sentences (one sentence = one document = one
chunk), repeated under new ids until N is reached, so every size has the same
kind of chunk.

    .venv/bin/python benchmarks/ingest_memory.py                      # 10k, 25k, 50k, onnx-int8
    .venv/bin/python benchmarks/ingest_memory.py --sizes 5000,10000,20000

The Redis server is a separate process (its memory grows with the index, as it
must) and is reported separately. The last line printed is one JSON object.
Timings are wall-clock on a possibly shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def sentences(data_dir: str) -> list[tuple[str, str, str]]:
    """``(doc_id, title, sentence)`` for every sentence of at least 6 words."""
    from rag_core.evaluation.scifact import load_scifact

    data = load_scifact(data_dir)
    out = []
    for doc_id, (title, abstract) in data.corpus.items():
        for j, sentence in enumerate(_SENTENCE.split(abstract)):
            if len(sentence.split()) >= 6:
                out.append((f"{doc_id}-{j}", title, sentence.strip()))
    return out


def rows(base: list[tuple[str, str, str]], n: int) -> Iterator[dict[str, str]]:
    for i in range(n):
        sid, title, text = base[i % len(base)]
        yield {"id": f"{sid}-r{i // len(base)}", "title": title, "text": text}


def child(args: argparse.Namespace) -> None:
    """One build, in this (fresh) process; prints its summary with this process's peak RSS."""
    from _memory import self_peak_rss_mb

    from pipelines import ingest

    started = time.perf_counter()
    summary = ingest.run(["--input", args.input, "--index", args.index, "--redis-url", args.redis_url,
                          "--embedding-backend", args.backend, "--embedding-batch-size", str(args.batch_size),
                          "--index-type", "flat", "--max-shrink", "1", "--keep-versions", "0"])
    summary["pipeline_seconds"] = round(time.perf_counter() - started, 1)
    summary["self_peak_rss_mb"] = self_peak_rss_mb()
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,25000,50000", help="chunk counts, comma-separated")
    parser.add_argument("--backend", default="onnx-int8", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", dest="redis_url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from _memory import run_measured

    from rag_core.embeddings import EmbeddingConfig, load_sentence_transformer
    from rag_core.store.catalog import IndexCatalog
    from rag_core.store.connection import RedisConnection
    from rag_core.store.local_server import LocalRedis

    sizes = [int(s) for s in args.sizes.split(",")]
    base = sentences(args.data_dir)
    work = Path(tempfile.mkdtemp(prefix="beam-rag-ingest-memory-"))
    load_sentence_transformer(EmbeddingConfig(backend=args.backend))  # export/quantize once, outside the runs
    server = LocalRedis(require_password=False, data_dir=work / "redis", port=17390 + os.getpid() % 1000)
    server.start()
    results: list[dict[str, Any]] = []
    try:
        for n in sizes:
            corpus = work / f"corpus-{n}.jsonl"
            with corpus.open("w") as fh:
                for row in rows(base, n):
                    fh.write(json.dumps(row) + "\n")
            index = f"mem{n}"
            result = run_measured([sys.executable, __file__, "--child", "--input", str(corpus), "--index", index,
                                   "--redis-url", server.url, "--backend", args.backend,
                                   "--batch-size", str(args.batch_size)], log=work / f"build-{n}.log")
            client = RedisConnection.from_url(server.url).client()
            try:
                chunks = IndexCatalog(client, index).info()["num_docs"]
                redis_mb = int(client.info("memory")["used_memory"]) / 2**20
                IndexCatalog(client, index).drop()  # each size starts from the same Redis state
            finally:
                client.close()
            row = {"chunks": chunks, "input_mb": round(corpus.stat().st_size / 2**20, 1),
                   "pipeline_seconds": result["pipeline_seconds"],
                   "chunks_per_s": round(chunks / result["pipeline_seconds"], 1),
                   "peak_rss_mb_pipeline_process": result["self_peak_rss_mb"],
                   "peak_rss_mb_process_tree": result["peak_rss_mb_process_tree"],
                   "redis_used_memory_mb_with_index": round(redis_mb, 1)}
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.stop()
    shutil.rmtree(work, ignore_errors=True)  # kept only when a run failed (its log is there)
    first, last = results[0], results[-1]
    print(json.dumps({
        "benchmark": "ingest_memory", "backend": args.backend, "runs": results,
        "rss_growth_mb": round(last["peak_rss_mb_process_tree"] - first["peak_rss_mb_process_tree"], 1),
        "rss_growth_ratio": round(last["peak_rss_mb_process_tree"] / first["peak_rss_mb_process_tree"], 3),
        "size_ratio": round(last["chunks"] / first["chunks"], 2),
    }))


if __name__ == "__main__":
    main()
