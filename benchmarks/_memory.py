"""Peak memory of a command and everything it starts, for the memory benchmarks.

The command runs in a session of its own; a sampler adds up the resident memory
of every process in that session (the pipeline, a model server Beam spawns for
``large_model``, ...) every 0.1 s, so the peak covers the whole process tree.
A child can also report its own main-process peak with :func:`self_peak_rss_mb`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _session_rss(sid: int) -> int:
    """Bytes resident in all processes of session ``sid``."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after ")": state ppid pgrp session ...; rss is field 24 overall
            total += int(fields[21]) * _PAGE
    return total


def run_measured(cmd: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Run ``cmd``; return its last stdout line parsed as JSON plus memory and time figures."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=out, text=True, env=env,
                            start_new_session=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _session_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = proc.communicate()
    done.set()
    sampler.join()
    if log:
        out.close()  # type: ignore[union-attr]
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    lines = [line for line in stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    result = json.loads(lines[-1])
    result.update({
        "wall_seconds": round(seconds, 1),
        "peak_rss_mb_process_tree": round(peak / 2**20, 1),
        # Only meaningful when it grew: RUSAGE_CHILDREN keeps the largest child so far.
        "child_maxrss_mb": round(after / 1024, 1) if after > before else None,
    })
    return result


def self_peak_rss_mb() -> float:
    """This process's peak RSS since it exec'd (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a forked
    child across ``exec``, so a big benchmark driver would inflate its children's figure.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def python() -> str:
    return sys.executable
