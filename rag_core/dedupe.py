"""One element per id, deterministic whatever order the runner delivers them in.

Documents and questions both carry an ``id`` and a ``source`` (``path:line`` or
``path:rowN``). Elements sharing an id are ordered by source (path, then line) and
one is kept by an explicit rule (:class:`Keep`): the build keeps the *last* version
of a document (a later line supersedes), the query pipeline the *first* question.
Every other one becomes a dead letter, built by the caller's ``letter`` function so
each pipeline keeps its own wording.

Example:
    >>> from rag_core.types import Document
    >>> docs = [Document("a", "new", source="f:2"), Document("a", "old", source="f:1")]
    >>> [d.text for d in pick_one("a", docs, Keep.LAST, superseded) if isinstance(d, Document)]
    ['new']
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam

from rag_core.sinks import DEAD_LETTER
from rag_core.types import DeadLetter

__all__ = ["DeduplicateById", "Keep", "order_key", "pick_one", "superseded"]

# (id, the element dropped, the element kept) → its dead letter.
DuplicateLetter = Callable[[str, Any, Any], DeadLetter]


class Keep(str, Enum):
    """Which of the elements sharing an id survives, in input order."""

    FIRST = "first"
    LAST = "last"


def order_key(source: str) -> tuple[str, int]:
    """``path:line`` / ``path:rowN`` → ``(path, n)``, so line 10 sorts after line 9.

    >>> order_key("a.jsonl:10"), order_key("b.parquet:row3"), order_key("notes.md")
    (('a.jsonl', 10), ('b.parquet', 3), ('notes.md', 0))
    """
    path, _, line = source.rpartition(":")
    digits = line[3:] if line.startswith("row") else line
    return (path, int(digits)) if path and digits.isdigit() else (source, 0)


def superseded(key: str, loser: Any, winner: Any) -> DeadLetter:
    """The build's wording: a document replaced by a later one with the same id."""
    return DeadLetter(loser.source, f"duplicate id: superseded by {winner.source}", id=key, stage="dedupe")


def pick_one(key: str, elements: Iterable[Any], keep: Keep, letter: DuplicateLetter) -> Iterator[Any]:
    """The kept element, and a ``TaggedOutput(DEAD_LETTER, ...)`` for each of the others."""
    ordered = sorted(elements, key=lambda e: order_key(e.source))
    winner = ordered[0] if keep is Keep.FIRST else ordered[-1]
    for element in ordered:
        if element is not winner:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter(key, element, winner))
    yield winner


def _pick_grouped(group: tuple[str, Iterable[Any]], keep: Keep, letter: DuplicateLetter) -> Iterator[Any]:
    return pick_one(group[0], group[1], keep, letter)


class DeduplicateById(beam.PTransform):
    """``elements → (unique, dead_letter)``: one element per ``id``, chosen by ``keep``.

    Args:
        keep: :attr:`Keep.FIRST` or :attr:`Keep.LAST` in input order (path, then line).
        letter: builds the dead letter of each dropped element (default :func:`superseded`).
    """

    def __init__(self, keep: Keep, letter: DuplicateLetter = superseded):
        super().__init__()
        self.keep = Keep(keep)
        self.letter = letter

    def expand(self, elements: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (elements
                | "KeyById" >> beam.Map(lambda e: (e.id, e))
                | "GroupById" >> beam.GroupByKey()
                | "PickOne" >> beam.FlatMap(_pick_grouped, self.keep, self.letter)
                .with_outputs(DEAD_LETTER, main="unique"))
