"""Live progress from inside a running pipeline: a counter the CLI can read while it runs.

Beam's metrics reach the driver only when the run ends. A :class:`ProgressCounter`
also keeps a plain per-process tally that a daemon thread writes, every
:data:`FLUSH_SECONDS`, as one small file per counter instance under the folder
named by ``$BEAM_RAG_PROGRESS_DIR`` (the CLI sets it for local runs only; worker
processes of the DirectRunner's multi-process mode inherit it). ``inc`` itself
only adds to an int: no I/O, no lock. Without the variable (a library call, a
remote runner) nothing is written.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["ENV", "FLUSH_SECONDS", "QUESTIONS_SETTLED", "ProgressCounter", "counter", "read_counts"]

ENV = "BEAM_RAG_PROGRESS_DIR"
FLUSH_SECONDS = 0.5
# A question whose answer is known before the query pipeline's join (generated, or
# abstained without the generator): the DirectRunner runs that join, and the sink
# after it, only once every generation is done, so the sink's count would sit at 0.
QUESTIONS_SETTLED = "questions_settled"


class _Tally:
    """One counter instance's count in one process, and the file it is written to."""

    __slots__ = ("count", "path", "written")

    def __init__(self, path: Path | None) -> None:
        self.count = 0
        self.path = path
        self.written = -1

    def flush(self) -> None:
        if self.path is None or self.count == self.written:
            return
        count = self.count
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(str(count), encoding="ascii")
            os.replace(tmp, self.path)
            self.written = count
        except OSError:  # the run ended and its folder is gone: stop writing
            self.path = None


_NO_TALLY = _Tally(None)
_tallies: set[_Tally] = set()  # kept past their DoFn, for its last count; dropped once their run's folder is gone
_lock = threading.Lock()
_flusher: tuple[int, threading.Thread] | None = None  # (pid, thread): a forked child starts its own


def _flush_all() -> None:
    for tally in list(_tallies):
        tally.flush()
        if tally.path is None:
            _tallies.discard(tally)


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        _flush_all()


def _open_tally(name: str) -> _Tally:
    folder = os.environ.get(ENV)
    if not folder:
        return _NO_TALLY
    global _flusher
    tally = _Tally(Path(folder) / f"{name}.{uuid.uuid4().hex}")
    with _lock:
        _tallies.add(tally)
        if _flusher is None or _flusher[0] != os.getpid():
            thread = threading.Thread(target=_flush_forever, name="beam-rag-progress", daemon=True)
            thread.start()
            if _flusher is None:  # a DirectRunner worker process ends after its last bundle: its last counts
                atexit.register(_flush_all)
            _flusher = (os.getpid(), thread)
    return tally


class ProgressCounter:
    """A count shown live by the CLI; with ``namespace`` also a Beam counter (the final summary).

    Create it in a DoFn's ``__init__``, like a Beam counter; it pickles without its tally.

    >>> c = ProgressCounter("documents_chunked")
    >>> c.inc(3)
    >>> import pickle; pickle.loads(pickle.dumps(c)).name
    'documents_chunked'
    """

    def __init__(self, name: str, namespace: str | None = None) -> None:
        self.name = name
        self.namespace = namespace
        self._metric: Any = None
        if namespace is not None:
            from apache_beam.metrics import Metrics

            self._metric = Metrics.counter(namespace, name)
        self._tally: _Tally | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tally": None}

    def inc(self, n: int = 1) -> None:
        if self._metric is not None:
            self._metric.inc(n)
        tally = self._tally
        if tally is None:
            tally = self._tally = _open_tally(self.name)
        tally.count += n


def counter(namespace: str, name: str) -> ProgressCounter:
    """A Beam counter ``namespace/name`` that the CLI also shows live."""
    return ProgressCounter(name, namespace)


def read_counts(folder: str | os.PathLike[str]) -> dict[str, int]:
    """Each counter's total over every process and instance so far (a file being replaced is skipped).

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> _ = (d / "chunks.a").write_text("3"); _ = (d / "chunks.b").write_text("4")
    >>> _ = (d / "docs.c").write_text("2"); _ = (d / "docs.d.tmp").write_text("9")
    >>> read_counts(d)
    {'chunks': 7, 'docs': 2}
    """
    totals: dict[str, int] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return totals
    for entry in entries:
        if entry.name.endswith(".tmp"):
            continue
        name = entry.name.rpartition(".")[0]
        try:
            value = int(Path(entry.path).read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue
        totals[name] = totals.get(name, 0) + value
    return totals
