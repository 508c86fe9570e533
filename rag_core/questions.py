"""Questions in: read, validate, deduplicate, and shape them for embedding.

Input is JSONL (``{"id", "question", "filter"?}`` per line) or a text file with one
question per line (the id is the line number, or ``file:line`` when the pattern
matches several files), local or any Beam filesystem (``gs://``). Every line that
is not a valid question becomes a ``DeadLetter`` with its ``path:line`` and reason.

Example:
    >>> parse_question(b'{"id": 7, "question": " Why? "}', "q.jsonl:1", "1", True, 100, {})
    Question(id='7', question='Why?', source='q.jsonl:1', filter=None)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.io import fileio

from rag_core.documents import DEFAULT_MAX_DOC_BYTES, clean_text
from rag_core.errors import ConfigError
from rag_core.filters import validate_filter
from rag_core.progress import counter as progress_counter
from rag_core.sinks import DEAD_LETTER, METRICS_NAMESPACE
from rag_core.store.schema import FieldKind
from rag_core.types import Chunk, Content, DeadLetter
from rag_core.validation import check_positive_int

__all__ = ["DEFAULT_MAX_QUESTION_CHARS", "INPUT_FORMATS", "Question", "ReadQuestions", "check_question",
           "clean_question", "duplicate_question", "parse_question", "to_chunk"]

DEFAULT_MAX_QUESTION_CHARS = 4000
INPUT_FORMATS = ("auto", "jsonl", "text")
_JSONL_EXTENSIONS = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class Question:
    """One valid question."""

    id: str
    question: str
    source: str  # "path:line", for messages
    filter: dict[str, Any] | None = None


def _dead(source: str, reason: str, id: str | None = None, stage: str = "read", excerpt: str = "") -> DeadLetter:
    return DeadLetter(source, reason, id=id, stage=stage, excerpt=excerpt[:200])


def clean_question(text: str) -> str:
    """The question as every entry point asks it: control characters dropped, stripped.

    >>> clean_question("  Why?\\u0000 ")
    'Why?'
    """
    return clean_text(text).strip()


def check_question(text: str, max_chars: int = DEFAULT_MAX_QUESTION_CHARS) -> str:
    """One question typed by hand (``beam-rag ask``), cleaned, or ``ConfigError``.

    >>> check_question(" Why? ")
    'Why?'
    """
    question = clean_question(text or "")
    if not question:
        raise ConfigError("The question is empty")
    if len(question) > max_chars:
        raise ConfigError(f"The question is longer than {max_chars} characters "
                          f"({len(question)}), the limit `beam-rag query` applies too")
    return question


def parse_question(raw: bytes, source: str, line_id: str, jsonl: bool, max_chars: int,
                   kinds: dict[str, FieldKind]) -> Question | DeadLetter | None:
    """One input line → a ``Question``, a ``DeadLetter`` with the reason, or None (blank line).

    >>> parse_question(b"\\xff\\xfe", "q.txt:2", "2", False, 100, {}).reason
    'undecodable bytes (not UTF-8)'
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _dead(source, "undecodable bytes (not UTF-8)", excerpt=raw[:200].decode("utf-8", "replace"))
    text = text.lstrip("\ufeff")
    if not text.strip():
        return None
    qid: Any = line_id
    filt: Any = None
    if jsonl:
        try:
            record = json.loads(text)
        except ValueError as exc:
            return _dead(source, f"malformed JSON: {exc}", excerpt=text)
        if not isinstance(record, dict):
            return _dead(source, f"expected a JSON object, got {type(record).__name__}", excerpt=text)
        qid = record.get("id", line_id)
        if isinstance(qid, bool) or not isinstance(qid, (str, int)) or not str(qid).strip():
            return _dead(source, "id must be a non-empty string or an integer", excerpt=text)
        qid = str(qid).strip()
        if "question" not in record:
            return _dead(source, "missing 'question' field", id=qid, excerpt=text)
        question = record["question"]
        if not isinstance(question, str):
            return _dead(source, f"'question' must be a string, got {type(question).__name__}", id=qid,
                         excerpt=text)
        filt = record.get("filter")
    else:
        question = text
    question = clean_question(question)
    if not question:
        return _dead(source, "empty question", id=str(qid), stage="validate")
    if len(question) > max_chars:
        return _dead(source, f"question longer than --max-question-chars ({len(question)} > {max_chars})",
                     id=str(qid), stage="validate", excerpt=question)
    if filt is not None:
        try:
            validate_filter(filt, kinds)
        except ConfigError as exc:
            return _dead(source, f"invalid filter: {exc}", id=str(qid), stage="validate", excerpt=question)
    return Question(str(qid), question, source, filt)


def duplicate_question(qid: str, dup: Question, first: Question) -> DeadLetter:
    """The query pipeline's wording for a question id seen again (``DeduplicateById(Keep.FIRST, ...)``)."""
    return _dead(dup.source, f"duplicate question id {qid!r} (first at {first.source})", id=qid, stage="validate",
                 excerpt=dup.question)


def _is_jsonl(path: str) -> bool:
    name = path.lower()[:-3] if path.lower().endswith(".gz") else path.lower()
    return name.endswith(_JSONL_EXTENSIONS)


MAX_QUESTION_LINE_BYTES = DEFAULT_MAX_DOC_BYTES + 1  # the JSONL documents' bound, newline included


class _ParseQuestionsFn(beam.DoFn):
    def __init__(self, input_format: str, max_chars: int, kinds: dict[str, FieldKind], many_files: bool):
        self.input_format = input_format
        self.max_chars = max_chars
        self.kinds = kinds
        self.many_files = many_files
        self._questions = progress_counter(METRICS_NAMESPACE, "questions")

    def process(self, readable: fileio.ReadableFile) -> Iterator[Any]:
        path = readable.metadata.path
        jsonl = _is_jsonl(path) if self.input_format == "auto" else self.input_format == "jsonl"
        base = path.rsplit("/", 1)[-1]
        from rag_core.readers import bounded_lines, open_bounded

        with open_bounded(readable) as fh:
            # Line by line under the documents' JSONL bound: a huge line is skipped, never held whole.
            for n, (line, line_bytes) in enumerate(bounded_lines(fh, MAX_QUESTION_LINE_BYTES), 1):
                line_id = f"{base}:{n}" if self.many_files else str(n)
                if line is None:
                    result: Any = _dead(f"{path}:{n}", f"question line larger than {MAX_QUESTION_LINE_BYTES} "
                                                       f"bytes ({line_bytes} bytes)", id=line_id)
                else:
                    result = parse_question(line.rstrip(b"\r\n"), f"{path}:{n}", line_id, jsonl, self.max_chars,
                                            self.kinds)
                if result is None:
                    continue
                self._questions.inc()
                if isinstance(result, DeadLetter):
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER, result)
                else:
                    yield result


class ReadQuestions(beam.PTransform):
    """``PBegin → (questions, dead_letter)`` for the files matching ``pattern``.

    Args:
        pattern: a path or glob, local or any Beam filesystem.
        input_format: ``auto`` (JSONL for ``.jsonl``/``.ndjson``/``.json``, else text),
            ``jsonl`` or ``text``.
        max_chars: longer questions are dead-lettered.
        kinds: the index's metadata field kinds, to validate each question's filter.
        many_files: ids of text lines are ``file:line`` rather than ``line``.
    """

    def __init__(self, pattern: str, input_format: str = "auto", max_chars: int = DEFAULT_MAX_QUESTION_CHARS,
                 kinds: dict[str, FieldKind] | None = None, many_files: bool = False):
        super().__init__()
        if input_format not in INPUT_FORMATS:
            raise ConfigError(f"--input-format must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}")
        self.pattern = pattern
        self.input_format = input_format
        self.max_chars = check_positive_int("--max-question-chars", max_chars)
        self.kinds = dict(kinds or {})
        self.many_files = many_files

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (pbegin
                | "Match" >> fileio.MatchFiles(self.pattern)
                | "Open" >> fileio.ReadMatches()
                | "Parse" >> beam.ParDo(_ParseQuestionsFn(self.input_format, self.max_chars, self.kinds,
                                                          self.many_files))
                .with_outputs(DEAD_LETTER, main="questions"))


def to_chunk(q: Question) -> Chunk:
    """The question as a Beam ``Chunk`` to embed; the text is also kept in metadata.

    >>> to_chunk(Question("q1", "Why?", "q.txt:1")).metadata
    {'question': 'Why?', 'source': 'q.txt:1'}
    """
    metadata: dict[str, Any] = {"question": q.question, "source": q.source}
    if q.filter is not None:
        metadata["filter"] = q.filter
    return Chunk(content=Content(text=q.question), id=q.id, metadata=metadata)
