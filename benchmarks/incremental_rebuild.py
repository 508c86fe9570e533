"""Incremental rebuild cost on SciFact: full build, unchanged rebuild, rebuild with 1% edited.

Each build is one ``beam-rag ingest`` process at the default settings (wall clock,
start-up included, its CPU seconds and peak RSS), against an embedded Redis; the
unchanged rebuild runs ``--repeat`` times and counts at its median. Targets (issue 13):
the unchanged rebuild takes at most 5% of the full build's time, the 1% edit at most
10%, and neither peaks higher in memory than the full build.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag_core.evaluation.scifact import corpus_jsonl_rows, load_scifact  # noqa: E402
from rag_core.store.local_server import LocalRedis  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "scifact"
if not DEFAULT_DATA.is_dir():
    DEFAULT_DATA = Path("/work/shared/datasets/scifact")


def edited(rows: list[dict[str, Any]], fraction: float) -> list[dict[str, Any]]:
    """``rows`` with every ``1/fraction``-th document's text changed (at least one)."""
    step = max(1, round(1 / fraction)) if fraction > 0 else len(rows) + 1
    return [dict(r, text=r["text"] + " (Revised.)") if n % step == 0 else r for n, r in enumerate(rows)]


def settle(url: str, timeout_s: float = 300.0) -> float:
    """Wait until Redis has no background save or AOF rewrite running; returns the seconds waited.

    A scheduled rebuild does not start the second the previous build published: the
    AOF rewrite Redis starts after a build's writes (and the CPU it takes on 2 cores)
    would otherwise be billed to the next build.
    """
    import redis

    client = redis.Redis.from_url(url)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout_s:
            info = client.info("persistence")
            if not (info.get("aof_rewrite_in_progress") or info.get("rdb_bgsave_in_progress")
                    or info.get("aof_rewrite_scheduled")):
                break
            time.sleep(0.2)
    finally:
        client.close()
    return round(time.perf_counter() - started, 1)


def ingest(corpus: Path, url: str, *extra: str) -> dict[str, Any]:
    """One ``beam-rag ingest`` process: its summary, wall seconds and peak RSS (MB)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    argv = [sys.executable, "-m", "pipelines.cli", "ingest", "--input", str(corpus), "--index", "bench",
            "--redis-url", url, *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    stdout = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"beam-rag ingest exited {proc.returncode}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {"seconds": round(seconds, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "chunks_embedded": summary["chunks_embedded"], "chunks_reused": summary["chunks_reused"],
            "chunks_written": summary["chunks_written"], "reuse": summary["reuse"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--limit", type=int, default=0, help="first N documents only (0 = all 5,183)")
    parser.add_argument("--edit-fraction", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3,
                        help="unchanged rebuilds to run (the ratio uses their median: on a shared 2-core "
                             "machine one run of ~25 s varies by a third)")
    args = parser.parse_args()

    rows = list(corpus_jsonl_rows(load_scifact(args.data_dir)))[: args.limit or None]
    work = Path(tempfile.mkdtemp(prefix="beam-rag-incremental-"))
    corpus, changed = work / "corpus.jsonl", work / "edited.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    changed.write_text("".join(json.dumps(r) + "\n" for r in edited(rows, args.edit_fraction)))
    server = LocalRedis(require_password=False, data_dir=work / "redis", port=16390 + os.getpid() % 1000)
    server.start()
    try:
        full = ingest(corpus, server.url)
        full["redis_settled_after_s"] = settle(server.url)
        runs = []
        for _ in range(max(1, args.repeat)):
            runs.append(ingest(corpus, server.url))
            runs[-1]["redis_settled_after_s"] = settle(server.url)
        unchanged = dict(sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2],
                         all_seconds=[r["seconds"] for r in runs])
        edit = ingest(changed, server.url)
    finally:
        server.stop()
    print(json.dumps({
        "documents": len(rows), "edited_documents": sum(a != b for a, b in zip(rows, edited(rows, args.edit_fraction))),
        "full": full, "unchanged": unchanged, "edited": edit,
        "ratio_unchanged_to_full": round(unchanged["seconds"] / full["seconds"], 3),
        "ratio_edited_to_full": round(edit["seconds"] / full["seconds"], 3),
    }))


if __name__ == "__main__":
    main()
