"""Batch question answering memory: peak RSS of `beam-rag query` as the question count grows.

Builds (or reuses) a SciFact index, then runs the real query pipeline (DirectRunner)
in a fresh subprocess per run and reports the peak resident memory of that
subprocess and of everything it starts (Beam runs the generator in a separate
model process with ``large_model``; the process-tree figure includes it):

- retrieval only (``--retrieval-only``): ``--retrieval-sizes`` questions (default 500, 2000);
- generation (SmolLM2-135M): ``--generation-sizes`` questions (default 50, 200).

Questions are SciFact claims (test, then train), repeated under new ids as needed.

    .venv/bin/python benchmarks/query_memory.py
    .venv/bin/python benchmarks/query_memory.py --redis-url redis://127.0.0.1:6390/0 --index scifact

The last line printed is one JSON object. Timings are wall-clock on a possibly shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
GENERATION_FLAGS = ["--top-k", "3", "--max-prompt-tokens", "512", "--max-new-tokens", "32",
                    "--generation-batch-size", "8", "--min-score", "-1"]


def child(args: argparse.Namespace, extra: list[str]) -> None:
    from _memory import self_peak_rss_mb

    from pipelines import query

    started = time.perf_counter()
    summary = query.run(["--input", args.input, "--output", args.output, "--index", args.index,
                         "--redis-url", args.redis_url, *extra])
    summary["pipeline_seconds"] = round(time.perf_counter() - started, 1)
    summary["self_peak_rss_mb"] = self_peak_rss_mb()
    print(json.dumps(summary))


def build_index(data_dir: str, docs: int, url: str, index: str, backend: str, work: Path) -> None:
    from pipelines import ingest
    from rag_core.evaluation.scifact import corpus_jsonl_rows, load_scifact

    rows = list(corpus_jsonl_rows(load_scifact(data_dir)))[:docs]
    path = work / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest.run(["--input", str(path), "--index", index, "--redis-url", url, "--embedding-backend", backend])


def write_questions(data_dir: str, n: int, path: Path) -> Path:
    from rag_core.evaluation.scifact import load_scifact

    claims = list(load_scifact(data_dir, "test").queries.values()) + list(
        load_scifact(data_dir, "train").queries.values())
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"q{i}", "question": claims[i % len(claims)]}) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrieval-sizes", default="500,2000")
    parser.add_argument("--generation-sizes", default="50,200")
    parser.add_argument("--docs", type=int, default=1000, help="SciFact documents in the index built here")
    parser.add_argument("--backend", default="onnx-int8", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--redis-url", dest="redis_url", default=None, help="reuse this Redis (with --index)")
    parser.add_argument("--index", default=None, help="reuse this index instead of building one")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.child:
        child(args, extra)
        return

    from _memory import run_measured

    from rag_core.store.local_server import LocalRedis

    work = Path(tempfile.mkdtemp(prefix="beam-rag-query-memory-"))
    server = None
    url, index = args.redis_url, args.index or "qmem"
    if url is None:
        server = LocalRedis(require_password=False, data_dir=work / "redis", port=18390 + os.getpid() % 1000)
        url = server.start()["url"]
    runs: list[dict[str, Any]] = []
    try:
        if args.index is None:
            started = time.perf_counter()
            build_index(args.data_dir, args.docs, url, index, args.backend, work)
            print(json.dumps({"index_build_seconds": round(time.perf_counter() - started, 1)}), flush=True)
        plan = [("retrieval", int(n), ["--retrieval-only"]) for n in args.retrieval_sizes.split(",") if n]
        plan += [("generation", int(n), GENERATION_FLAGS) for n in args.generation_sizes.split(",") if n]
        for mode, n, flags in plan:
            questions = write_questions(args.data_dir, n, work / f"q-{mode}-{n}.jsonl")
            result = run_measured([sys.executable, __file__, "--child", "--input", str(questions),
                                   "--output", str(work / f"a-{mode}-{n}.jsonl"), "--index", index,
                                   "--redis-url", url, *flags], log=work / f"{mode}-{n}.log")
            row = {"mode": mode, "questions": n, "answered": result["questions_answered"],
                   "dead_lettered": result["questions_dead_lettered"], "reconciled": result["reconciled"],
                   "pipeline_seconds": result["pipeline_seconds"],
                   "questions_per_s": round(n / result["pipeline_seconds"], 2),
                   "tokens_generated": result.get("tokens_generated"),
                   "peak_rss_mb_pipeline_process": result["self_peak_rss_mb"],
                   "peak_rss_mb_process_tree": result["peak_rss_mb_process_tree"]}
            runs.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if server is not None:
            server.stop()
    shutil.rmtree(work, ignore_errors=True)  # kept only when a run failed (its log is there)
    print(json.dumps({"benchmark": "query_memory", "backend_of_index": args.backend,
                      "generation_flags": " ".join(GENERATION_FLAGS), "runs": runs}))


if __name__ == "__main__":
    main()
