"""Beam IO for source documents: JSONL, plain text / Markdown, CSV and Parquet,
local or ``gs://``, through ``fileio.MatchFiles`` / ``ReadMatches``.

Every input record becomes a ``Document`` (main output) or a ``DeadLetter``
(tagged output) with its ``path:line``, so counts always reconcile.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from rag_core.documents import (
    DEFAULT_MAX_DOC_BYTES, FieldMap, document_from_file, document_from_json_line, document_from_record,
)
from rag_core.errors import ConfigError
from rag_core.progress import counter as progress_counter
from rag_core.sinks import DEAD_LETTER, METRICS_NAMESPACE
from rag_core.types import DeadLetter, Document

FORMATS = ("auto", "jsonl", "text", "csv", "parquet")
_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".txt": "text", ".md": "text", ".markdown": "text", ".text": "text", ".rst": "text",
    ".csv": "csv", ".tsv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}


def detect_format(path: str, fmt: str = "auto") -> str | None:
    """The reader for ``path``: ``fmt`` unless it is ``auto``, else by extension.

    >>> detect_format("gs://b/docs/a.jsonl"), detect_format("notes.md"), detect_format("x.bin")
    ('jsonl', 'text', None)
    """
    if fmt != "auto":
        if fmt not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return _EXTENSIONS.get(os.path.splitext(name)[1])


_READ_BLOCK = 1 << 20


def bounded_lines(fh: Any, max_line_bytes: int, block_size: int = _READ_BLOCK) -> Iterator[tuple[bytes | None, int]]:
    """``(line, size)`` for each line of a binary file, without its ``\\n``.

    A line longer than ``max_line_bytes`` is skipped in blocks rather than read whole:
    it comes out as ``(None, size)``, so a huge line costs at most ``max_line_bytes``
    plus one block of memory. Works on any object with ``read(n)`` (Beam's
    compressed files have no bounded ``readline``).

    >>> import io
    >>> list(bounded_lines(io.BytesIO(b"ab\\n" + b"x" * 10 + b"\\nc"), 4, block_size=3))
    [(b'ab', 2), (None, 10), (b'c', 1)]
    """
    kept = bytearray()
    size = 0
    too_long = False
    while True:
        block = fh.read(block_size)
        if not block:
            break
        start = 0
        while True:
            newline = block.find(b"\n", start)
            end = len(block) if newline < 0 else newline
            size += end - start
            if not too_long:
                if len(kept) + end - start > max_line_bytes:
                    too_long = True
                    kept = bytearray()
                else:
                    kept += block[start:end]
            if newline < 0:
                break
            yield (None if too_long else bytes(kept)), size
            kept, size, too_long = bytearray(), 0, False
            start = newline + 1
    if size or kept:
        yield (None if too_long else bytes(kept)), size


def _undecodable(row: dict[str, Any]) -> bool:
    return any(isinstance(v, str) and any("\udc80" <= ch <= "\udcff" for ch in v) for v in row.values())


class _ParseFileFn(beam.DoFn):
    def __init__(self, fmt: str, fields: FieldMap, max_doc_bytes: int):
        self.fmt = fmt
        self.fields = fields
        self.max_doc_bytes = max_doc_bytes
        self._read = progress_counter(METRICS_NAMESPACE, "documents_read")
        self._bytes = Metrics.counter(METRICS_NAMESPACE, "bytes_read")

    def process(self, readable: fileio.ReadableFile) -> Iterator[Any]:
        path = readable.metadata.path
        size = readable.metadata.size_in_bytes
        self._bytes.inc(size)
        fmt = detect_format(path, self.fmt)
        for result in self._parse(readable, path, size, fmt):
            self._read.inc()
            if isinstance(result, DeadLetter):
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, result)
            else:
                yield result

    def _parse(self, readable: fileio.ReadableFile, path: str, size: int,
               fmt: str | None) -> Iterable[Document | DeadLetter]:
        if fmt is None:
            yield DeadLetter(path, "unknown file format: name it with --format", id=path)
        elif fmt == "text":
            if size > self.max_doc_bytes:
                yield DeadLetter(path, f"document larger than --max-doc-bytes ({size} > {self.max_doc_bytes} bytes)",
                                 id=path)
            else:
                with readable.open() as fh:
                    yield document_from_file(path, fh.read(), self.max_doc_bytes)
        elif fmt == "jsonl":
            with readable.open() as fh:
                # Bounded: a line over --max-doc-bytes is counted and skipped, never held whole.
                for n, (line, line_bytes) in enumerate(bounded_lines(fh, self.max_doc_bytes + 1), 1):
                    if line is None:
                        yield DeadLetter(f"{path}:{n}", f"document larger than --max-doc-bytes "
                                                         f"({line_bytes} > {self.max_doc_bytes} bytes)")
                        continue
                    doc = document_from_json_line(line.rstrip(b"\r\n"), f"{path}:{n}", self.fields,
                                                  self.max_doc_bytes)
                    if doc is not None:
                        yield doc
        elif fmt == "csv":
            csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
            delimiter = "\t" if path.lower().rstrip(".gz").endswith(".tsv") else ","
            with readable.open() as fh:
                text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
                reader = csv.DictReader(text, delimiter=delimiter)
                if reader.fieldnames is None:
                    return
                for row in reader:
                    source = f"{path}:{reader.line_num}"
                    row = {k: v for k, v in row.items() if k is not None}
                    if _undecodable(row):
                        yield DeadLetter(source, "undecodable bytes (not UTF-8)")
                    elif sum(len(v or "") for v in row.values()) > self.max_doc_bytes:
                        yield DeadLetter(source, f"document larger than --max-doc-bytes ({self.max_doc_bytes} bytes)")
                    else:
                        yield document_from_record({k: (v if v != "" else None) for k, v in row.items()},
                                                   source, self.fields, extra_metadata=True)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            with readable.open() as fh:
                n = 0
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=1024):
                    for row in batch.to_pylist():
                        n += 1
                        yield document_from_record(row, f"{path}:row{n}", self.fields, extra_metadata=True)


class ReadDocuments(beam.PTransform):
    """``PBegin → (documents, dead_letters)`` for files matching ``pattern``.

    Args:
        pattern: a path or glob, local or any Beam filesystem (``gs://...``).
        fmt: ``auto`` (by extension), ``jsonl``, ``text``, ``csv`` or ``parquet``.
        fields: which record fields hold the id, text and title.
        max_doc_bytes: larger documents are dead-lettered, never loaded whole.
    """

    def __init__(self, pattern: str, fmt: str = "auto", fields: FieldMap = FieldMap(),
                 max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES):
        super().__init__()
        if fmt not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if max_doc_bytes <= 0:
            raise ConfigError("--max-doc-bytes must be positive")
        self.pattern = pattern
        self.fmt = fmt
        self.fields = fields
        self.max_doc_bytes = max_doc_bytes

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (pbegin
                | "Match" >> fileio.MatchFiles(self.pattern)
                | "Open" >> fileio.ReadMatches(compression=None)
                | "Parse" >> beam.ParDo(_ParseFileFn(self.fmt, self.fields, self.max_doc_bytes))
                .with_outputs(DEAD_LETTER, main="documents"))

