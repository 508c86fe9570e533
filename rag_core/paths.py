"""Where beam-rag keeps its local state, and how a cache folder is built safely.

Every folder under the home is named here, so a newcomer looking for "where does
it write?" finds one answer:

- ``$BEAM_RAG_HOME`` (default ``~/.beam-rag``): :func:`beam_rag_home`;
- ``redis/`` in it: the embedded local Redis (:func:`redis_data_dir`);
- ``dead-letters/`` in it: rejected records and unanswered questions (:func:`dead_letter_dir`);
- ``$BEAM_RAG_CACHE_DIR`` (default ``models/`` in the home): converted and exported
  models (:func:`cache_dir`), each built by :func:`build_cached_folder`.

Example:
    >>> dead_letter_dir() == beam_rag_home() / "dead-letters"
    True
    >>> cache_dir() == Path(os.environ.get(CACHE_ENV) or beam_rag_home() / "models")
    True
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from rag_core.locks import file_lock

__all__ = [
    "CACHE_ENV",
    "HOME_ENV",
    "beam_rag_home",
    "build_cached_folder",
    "cache_dir",
    "dead_letter_dir",
    "redis_data_dir",
]

HOME_ENV = "BEAM_RAG_HOME"
CACHE_ENV = "BEAM_RAG_CACHE_DIR"

logger = logging.getLogger(__name__)


def beam_rag_home() -> Path:
    """``$BEAM_RAG_HOME``, else ``~/.beam-rag``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".beam-rag").expanduser()


def cache_dir() -> Path:
    """Where converted and exported models live: ``$BEAM_RAG_CACHE_DIR``, else ``<home>/models``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else beam_rag_home() / "models"


def dead_letter_dir() -> Path:
    """Where dead letters go when no file is named for them: ``<home>/dead-letters``."""
    return beam_rag_home() / "dead-letters"


def redis_data_dir() -> Path:
    """The embedded local Redis's data folder: ``<home>/redis``."""
    return beam_rag_home() / "redis"


def build_cached_folder(destination: Path, build: Callable[[Path], None],
                        is_complete: Callable[[Path], bool]) -> Path:
    """``destination``, built once by ``build`` unless ``is_complete`` says it already is.

    ``build`` fills a fresh temporary folder next to ``destination``, which is then
    renamed into place, all under a file lock (``.<name>.lock`` beside it): concurrent
    processes wait for one build instead of racing, and a crash never leaves a folder
    that looks complete. An incomplete leftover at ``destination`` is replaced.

    Raises:
        RuntimeError: ``build`` returned but ``is_complete`` refuses what it wrote.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> def build(folder: Path) -> None:
        ...     (folder / "weights.bin").write_bytes(b"\\0" * 8)
        >>> def complete(folder: Path) -> bool:
        ...     return (folder / "weights.bin").is_file()
        >>> build_cached_folder(root / "model", build, complete) == root / "model"
        True
        >>> sorted(p.name for p in root.iterdir())
        ['.model.lock', 'model']
        >>> shutil.rmtree(root)
    """
    destination = Path(destination).expanduser()
    if is_complete(destination):
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(destination.parent / f".{destination.name}.lock"):
        if is_complete(destination):  # another process built it while we waited
            return destination
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-", dir=destination.parent))
        try:
            started = time.perf_counter()
            build(staging)
            if not is_complete(staging):
                raise RuntimeError(f"building {destination} left an incomplete folder")
            staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            elif destination.exists() or destination.is_symlink():
                destination.unlink()
            try:
                os.rename(staging, destination)
            except OSError:
                if not is_complete(destination):  # not another process (without flock) finishing first
                    raise
            logger.info("built %s in %.1f s", destination, time.perf_counter() - started)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return destination
