"""Run every benchmark, each in its own subprocess, and print one JSON summary line per benchmark.

``make bench`` runs this with quick settings (small sizes, so the whole set is a
smoke run of the benchmarks rather than a measurement); ``--full`` runs each
script with its own defaults, the sizes its targets in README.md are quoted at.
A benchmark prints a JSON object as its last line; that object becomes the
``result`` of its summary line (``null`` when the script failed or printed none).

    .venv/bin/python benchmarks/run_all.py                     # quick settings, all of them
    .venv/bin/python benchmarks/run_all.py --full --only qa_throughput
    .venv/bin/python benchmarks/run_all.py --dry-run           # the commands, run nothing
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent

# Every benchmark script, with the flags that make it quick (the smallest sizes that still
# exercise every measured step). Helpers (``_memory.py``) are not benchmarks.
QUICK: dict[str, list[str]] = {
    "retrieval_quality": ["--index-types", "flat", "--depth-chunks", "100"],
    "ingest_throughput": ["--limit", "200"],
    "ingest_memory": ["--sizes", "1000"],
    "incremental_rebuild": ["--limit", "200"],
    "query_memory": ["--docs", "200", "--retrieval-sizes", "50", "--generation-sizes", "5"],
    "qa_throughput": ["--questions", "8", "--skip-memory"],
    "answer_speed": ["--prompts", "4", "--skip-pipeline"],
}


def command(name: str, full: bool) -> list[str]:
    """The command line that runs benchmark ``name`` (quick flags unless ``full``)."""
    return [sys.executable, str(HERE / f"{name}.py"), *([] if full else QUICK[name])]


def last_json(stdout: str) -> Any:
    """The JSON object on the last non-blank line of ``stdout``, or None.

    >>> last_json('warming up\\n{"ratio": 0.93}\\n\\n')
    {'ratio': 0.93}
    >>> last_json("Traceback ...") is None
    True
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        value = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def run(name: str, full: bool, timeout_s: float | None) -> dict[str, Any]:
    """Run one benchmark; its stderr passes through so progress stays visible."""
    argv = command(name, full)
    started = time.monotonic()
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=timeout_s, check=False)
        returncode, stdout = done.returncode, done.stdout
    except subprocess.TimeoutExpired as err:
        returncode, stdout = None, err.stdout if isinstance(err.stdout, str) else ""
    return {"benchmark": name, "returncode": returncode, "seconds": round(time.monotonic() - started, 1),
            "quick": not full, "result": last_json(stdout)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--full", action="store_true", help="each script's own defaults, not the quick settings")
    parser.add_argument("--only", nargs="+", choices=sorted(QUICK), metavar="NAME",
                        help=f"run these benchmarks only (of {', '.join(QUICK)})")
    parser.add_argument("--timeout-s", type=float, default=None, help="per benchmark; a timeout is a failure")
    parser.add_argument("--dry-run", action="store_true", help="print each command, run nothing")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.only or QUICK:
        if args.dry_run:
            print(json.dumps({"benchmark": name, "command": command(name, args.full)}), flush=True)
            continue
        summary = run(name, args.full, args.timeout_s)
        failed += summary["returncode"] != 0
        print(json.dumps(summary), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
