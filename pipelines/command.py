"""The command boundary: how ``beam-rag`` and ``python -m pipelines.<x>`` meet the user.

Errors we expect (``BeamRagError``) become one ``beam-rag: error: ...`` line and exit
code :data:`EXIT_ERROR`, whatever runner wrapped them; the run's summary is printed
as one JSON line; ``--help`` lists a pipeline's own flags. :func:`read_metrics` is the
one reader of the Beam metrics a summary is built from.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from rag_core.errors import BeamRagError

if TYPE_CHECKING:  # `beam-rag` itself imports this module: keep it free of Beam
    from apache_beam.options.pipeline_options import PipelineOptions

__all__ = ["EXIT_ERROR", "PipelineCommand", "print_help", "progress", "read_metrics", "run_as_command", "unwrap_error",
           "wants_help"]

EXIT_ERROR = 2

Run = Callable[[Sequence[str] | None], dict[str, Any]]


_STAGE_SUFFIX = re.compile(r"\s*\[while running '[^']*'\]$")


def unwrap_error(exc: BaseException) -> BeamRagError | None:
    """Find our own error inside whatever a runner wrapped it in."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BeamRagError):  # Beam appends the stage to the message it re-raises
            cleaned = _STAGE_SUFFIX.sub("", str(current))
            return current if cleaned == str(current) else type(current)(cleaned)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    import rag_core.errors as errors

    text = str(exc)
    refused = re.search(r"(User \S+ has no permissions to run the '[^']+' command|No permissions to access a (key|channel))",
                        text)
    if refused:  # a redis NoPermissionError, raised here or inside a Beam stage
        return errors.RedisPermissionError(
            f"Redis refused: {refused.group(1)}. `beam-rag redis acl --index NAME --role build` (or `--role query`) "
            "prints the ACL a build (or a query job) needs")
    for name in dir(errors):
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, BeamRagError) and f"{name}: " in text:
            message = text.split(f"{name}: ", 1)[1].splitlines()[0].strip()
            message = re.sub(r"\s*\[while running '[^']*'\]$", "", message).strip("'\"[]")
            return cls(message)
    return None


def wants_help(argv: Sequence[str]) -> bool:
    """
    >>> wants_help(["--index", "x", "-h"]), wants_help(["--index", "help"])
    (True, False)
    """
    return any(a in ("-h", "--help") for a in argv)


def print_help(prog: str, description: str, options: Iterable[type[PipelineOptions]]) -> None:
    """A pipeline's ``--help``: its own flags (any other Beam flag is passed through)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        epilog="Any standard Beam pipeline option (--runner, --project, --temp_location ...) is passed through.")
    for cls in options:
        cls._add_argparse_args(parser)  # noqa: SLF001 - Beam's own hook
    parser.print_help()


def progress(prog: str, message: str) -> None:
    """One progress line on stderr (stdout's last line is the JSON summary); none with ``--quiet``."""
    from pipelines.progress import say

    say(prog, message)


def run_as_command(run: Run, argv: Sequence[str] | None, help: Callable[[], None] | None = None,
                   verbose: bool = False) -> int:
    """Run, print the summary as JSON and return 0; our errors become one
    ``beam-rag: error: ...`` line on stderr and :data:`EXIT_ERROR` (a traceback with
    ``verbose``), anything else a traceback. With ``help``, ``-h``/``--help`` calls it
    instead of running."""
    args = list(sys.argv[1:] if argv is None else argv)
    if help is not None and wants_help(args):
        help()
        return 0
    logging.basicConfig(level=logging.WARNING)
    try:
        summary = run(args)
    except Exception as exc:  # the command boundary: one clear message, not a traceback
        ours = unwrap_error(exc)
        if ours is None or verbose:
            raise
        print(f"beam-rag: error: {ours}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(summary, default=str))
    return 0


def read_metrics(result: Any, namespace: str | None = None,
                 also: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """A finished run's metrics: counters (name → int, summed over steps) and
    distributions (name → ``{count, mean_ms, max_ms}``) of ``namespace`` (default
    ``beam_rag``), plus the counters named in ``also`` (namespace → names). Empty
    where the runner does not report metrics to the driver."""
    from apache_beam.metrics.metric import MetricsFilter

    from rag_core.sinks import METRICS_NAMESPACE

    namespace = namespace or METRICS_NAMESPACE

    try:
        found = result.metrics().query(MetricsFilter().with_namespace(namespace))
        counters = list(found["counters"])
        for other, names in (also or {}).items():
            counters += [c for c in result.metrics().query(MetricsFilter().with_namespace(other))["counters"]
                         if c.key.metric.name in names]
    except Exception:  # some runners do not report metrics to the driver
        return {}
    out: dict[str, Any] = {}
    for c in counters:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    for d in found["distributions"]:
        value = d.committed if d.committed is not None else d.attempted
        if value is not None and value.count:
            out[d.key.metric.name] = {"count": value.count, "mean_ms": round(value.sum / value.count, 1),
                                      "max_ms": value.max}
    return out


@dataclass(frozen=True)
class PipelineCommand:
    """A pipeline module's command: its ``--help`` and its ``main``, the same for each pipeline."""

    prog: str
    description: str
    options: tuple[type[PipelineOptions], ...]
    run: Run

    def print_help(self) -> None:
        print_help(self.prog, self.description, self.options)

    def main(self, argv: Sequence[str] | None = None) -> int:
        return run_as_command(self.run, argv, help=self.print_help)
