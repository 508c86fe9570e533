"""What a person sees while a long local run works: live progress on stderr (tqdm).

The CLI chooses the :class:`Verbosity` once (:func:`configure`); a library call
keeps the default, ``None``: no progress at all. :func:`live` wraps one pipeline
run: it points the workers' :class:`~rag_core.progress.ProgressCounter`s at a
fresh folder, polls it from a thread and shows one tqdm bar, updated in place on
a terminal, or a plain line every :data:`LINE_SECONDS` otherwise (CI logs, cron).
Remote runners show their own progress: nothing is shown for them.
"""

from __future__ import annotations

import enum
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from rag_core.progress import ENV, read_counts

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

__all__ = ["LINE_SECONDS", "LOCAL_RUNNERS", "Track", "Verbosity", "configure", "count_records", "is_local", "live",
           "say", "verbosity"]

LINE_SECONDS = 30.0  # a plain progress line this often when stderr is not a terminal
POLL_SECONDS = 0.5
LOCAL_RUNNERS = {None, "", "DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner", "FnApiRunner",
                 "PrismRunner"}


class Verbosity(enum.Enum):
    QUIET = "quiet"  # the final summary only
    NORMAL = "normal"  # progress, no library noise
    VERBOSE = "verbose"  # progress and every library log


_verbosity: Verbosity | None = None  # None: a library call, no progress


def configure(level: Verbosity | None) -> None:
    """The CLI's choice for this process (``None``: back to a library's silence)."""
    global _verbosity
    _verbosity = level


def verbosity() -> Verbosity | None:
    return _verbosity


def say(prog: str, message: str) -> None:
    """One line on stderr for a person (stdout's last line is the JSON summary); none with ``--quiet``."""
    if _verbosity is Verbosity.QUIET:
        return
    from tqdm import tqdm

    tqdm.write(f"{prog}: {message}", file=sys.stderr)


def is_local(options: PipelineOptions) -> bool:
    """Whether the run executes in this machine's processes (progress is then ours to show).

    >>> from apache_beam.options.pipeline_options import PipelineOptions
    >>> is_local(PipelineOptions([])), is_local(PipelineOptions(["--runner", "DataflowRunner"]))
    (True, False)
    """
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    name = runner if runner is None or isinstance(runner, str) else type(runner).__name__
    return (name.rpartition(".")[2] if name else name) in LOCAL_RUNNERS


def _count_lines(path: str) -> int:
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def count_records(pattern: str, fmt: str = "auto") -> int | None:
    """About how many records ``pattern``'s local files hold (JSONL and text lines, CSV rows,
    Parquet rows, one per text/Markdown file), or ``None`` where that is not cheap to know
    (remote or compressed files, an unknown format). An estimate for an ETA: blank lines count.

    >>> import tempfile, pathlib; d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.jsonl").write_text('{"id": 1}\\n{"id": 2}\\n{"id": 3}')
    >>> count_records(str(d / "*.jsonl")), count_records(str(d / "*.jsonl"), "text"), count_records("gs://b/x")
    (3, 1, None)
    """
    from apache_beam.io.filesystems import FileSystems

    from rag_core.readers import detect_format

    if "://" in pattern:
        return None
    try:
        paths = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except Exception:  # a pattern the run itself will report on
        return None
    total = 0
    for path in paths:
        kind = detect_format(path, fmt) if fmt in ("auto", "jsonl", "text", "csv", "parquet") else fmt
        if path.lower().endswith(".gz") and kind != "text":
            return None
        if kind == "text":
            total += 1
        elif kind in ("jsonl", "lines"):
            total += _count_lines(path)
        elif kind == "csv":
            total += max(0, _count_lines(path) - 1)
        elif kind == "parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(path).metadata.num_rows
        else:
            return None
    return total


@dataclass(frozen=True)
class Track:
    """What one run's bar shows: ``counter`` (a :class:`~rag_core.progress.ProgressCounter` name)
    out of ``total()`` (computed in the background; ``None``: rate only), and ``also`` as ``label=N``.

    ``ahead`` names a counter of the same items taken before a grouping stage: the
    DirectRunner runs a stage only once the one before it is done, so a count at the
    sink would stay at 0 until the end; the bar shows whichever of the two is further.

    >>> Track("q", "answered", "questions", ahead="settled").done({"settled": 3, "answered": 1})
    3
    >>> Track("q", "answered", "questions", ahead="settled").done({"answered": 4})
    4
    """

    prog: str
    counter: str
    unit: str
    total: Callable[[], int | None] | None = None
    also: dict[str, str] = field(default_factory=dict)  # label -> counter name
    ahead: str | None = None

    def done(self, counts: dict[str, int]) -> int:
        return max(counts.get(self.counter, 0), counts.get(self.ahead, 0) if self.ahead else 0)


class _Display(threading.Thread):
    def __init__(self, track: Track, folder: str) -> None:
        super().__init__(name="beam-rag-progress-display", daemon=True)
        self.track, self.folder = track, folder
        self.stop = threading.Event()
        self.total: int | None = None
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.bar: Any = None
        if self.tty:
            from tqdm import tqdm

            try:
                sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
            except (OSError, ValueError):
                sized = False
            self.bar = tqdm(total=None, unit=f" {track.unit}", desc=track.prog, file=sys.stderr,
                            dynamic_ncols=sized, ncols=None if sized else 100, mininterval=POLL_SECONDS,
                            leave=True, disable=False)
        if track.total is not None:
            threading.Thread(target=self._count, name="beam-rag-progress-total", daemon=True).start()

    def _count(self) -> None:
        try:
            self.total = self.track.total() if self.track.total else None
        except Exception:  # an estimate only: rate without ETA
            self.total = None

    def _postfix(self, counts: dict[str, int]) -> str:
        return ", ".join(f"{label}={counts.get(name, 0)}" for label, name in self.track.also.items())

    def show(self, final: bool = False) -> None:
        counts = read_counts(self.folder)
        n = self.track.done(counts)
        total = self.total if self.total is None or n <= self.total else None
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = n
            self.bar.set_postfix_str(self._postfix(counts), refresh=False)
            self.bar.refresh()
        elif final or time.monotonic() - getattr(self, "_last_line", self.started) >= LINE_SECONDS:
            from tqdm import tqdm

            self._last_line = time.monotonic()
            line = tqdm.format_meter(n, total, time.monotonic() - self.started, prefix=self.track.prog,
                                     unit=f" {self.track.unit}", postfix=self._postfix(counts) or None, ncols=0)
            print(line, file=sys.stderr, flush=True)

    def run(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            self.show()

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=5)
        self.show(final=True)
        if self.bar is not None:
            self.bar.close()


@contextmanager
def live(options: PipelineOptions, track: Track) -> Iterator[None]:
    """Show ``track`` while the body runs the pipeline; nothing for a library call,
    with ``--quiet`` or on a remote runner."""
    if _verbosity in (None, Verbosity.QUIET) or not is_local(options):
        yield
        return
    from rag_core.progress import FLUSH_SECONDS

    folder = tempfile.mkdtemp(prefix="beam-rag-progress-")
    before = os.environ.get(ENV)
    os.environ[ENV] = folder
    from tqdm.contrib.logging import logging_redirect_tqdm

    display = _Display(track, folder)
    display.start()
    try:
        with logging_redirect_tqdm():  # log lines above the bar, not through it
            _keep_filters()
            yield
            time.sleep(FLUSH_SECONDS * 1.2)  # the workers' last counts
    finally:
        display.close()
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- quiet by default

OURS = ("pipelines", "rag_core", "__main__")


def _keep_filters() -> None:
    """Give the handlers ``logging_redirect_tqdm`` swapped in the quiet filter the CLI set
    on the ones they replace (tqdm copies the formatter, not the filters)."""
    import logging

    root = logging.getLogger()
    ours = next((f for h in root.handlers for f in h.filters if isinstance(f, _OursOrErrors)), None)
    if ours is None:
        return
    for handler in root.handlers:
        if not any(isinstance(f, _OursOrErrors) for f in handler.filters):
            handler.addFilter(ours)


class _OursOrErrors:
    """A log filter: our own loggers from ``ours`` (INFO; WARNING with ``--quiet``), anyone
    else's (Beam warns on the root logger) only from ERROR, and Beam's own not at all: it logs
    a failed bundle at ERROR with its traceback, which the command prints as one line."""

    def __init__(self, ours: int) -> None:
        self.ours = ours

    def filter(self, record: Any) -> bool:
        import logging

        top = record.name.split(".")[0]
        if top == "apache_beam":
            return record.levelno > logging.CRITICAL
        return record.levelno >= (self.ours if top in OURS else logging.ERROR)


def quiet_libraries(quiet: bool = False) -> None:
    """The CLI without ``--verbose``: no dependency warnings, logs or progress bars.

    Set through the environment too, before the libraries are imported, so that the
    DirectRunner's worker processes inherit it. Our own bars pass ``disable=False``.
    """
    import logging
    import warnings

    for name, value in (("PYTHONWARNINGS", "ignore"), ("TRANSFORMERS_VERBOSITY", "error"),
                        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TQDM_DISABLE", "1")):
        os.environ.setdefault(name, value)
    warnings.simplefilter("ignore")
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(logging.INFO)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, _OursOrErrors)]:
            handler.removeFilter(old)
        handler.addFilter(_OursOrErrors(logging.WARNING if quiet else logging.INFO))
