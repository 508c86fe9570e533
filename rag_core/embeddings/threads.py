"""CPU threads for embedding model copies: this process's share of the machine."""

from __future__ import annotations

import math
import os
from pathlib import Path

from rag_core.validation import check_positive_int

__all__ = ["available_cpus", "default_threads"]


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def default_threads(workers: int = 1) -> int:
    """Threads per model copy when ``workers`` copies share this machine's CPUs.

    Each copy defaulting to all cores oversubscribes the CPU (a known
    sentence-transformers pitfall), so the cores are divided between the workers.

    Example:
        >>> default_threads(workers=10**6)
        1
    """
    check_positive_int("workers", workers)
    return max(1, available_cpus() // workers)
