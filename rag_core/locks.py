"""A cross-process file lock: the model caches (:func:`rag_core.paths.build_cached_folder`) and
the local Redis's start/stop (:mod:`rag_core.store.local_server`)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

__all__ = ["file_lock"]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (POSIX ``flock``), held for the ``with`` block.

    Where ``fcntl`` is missing (Windows) it is a no-op: the caches' atomic renames alone
    keep them consistent, at the cost of concurrent workers doing the same work twice.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
