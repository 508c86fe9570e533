"""Beam IO for source documents: JSONL, plain text / Markdown, CSV and Parquet,
local or ``gs://``, through ``fileio.MatchFiles`` / ``ReadMatches``.

Every input record becomes a ``Document`` (main output) or a ``DeadLetter``
(tagged output) with its ``path:line``, so counts always reconcile.

One byte budget per record (``--max-doc-bytes``) holds while reading, in every
format: ``.gz`` files are decompressed in bounded blocks (a gzip bomb stops at the
limit), CSV fields are bounded by ``csv.field_size_limit`` and each record's raw
text by :class:`_RecordLines` (an unbalanced quote or an oversized record
dead-letters the rest of the file, with its line), Parquet rows are sized from
the Arrow batch before any Python object is built.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
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


def open_bounded(readable: fileio.ReadableFile) -> Any:
    """A binary file object whose ``read(n)`` never decompresses more than ``n`` bytes.

    ``.gz`` goes through :class:`gzip.GzipFile` over the raw bytes (Beam's own
    decompressor inflates a whole compressed block at once, unbounded for a bomb).
    """
    from apache_beam.io.filesystem import CompressionTypes

    if readable.metadata.path.lower().endswith(".gz"):
        return gzip.GzipFile(fileobj=readable.open(compression_type=CompressionTypes.UNCOMPRESSED), mode="rb")
    return readable.open()


def parquet_row_bytes(batch: Any) -> list[int]:
    """The bytes of each row of an Arrow record batch, read from the batch's buffers.

    String and binary columns count their values' lengths exactly; other columns
    their average width (``nbytes / rows``).

    >>> import pyarrow as pa
    >>> parquet_row_bytes(pa.RecordBatch.from_pydict({"id": ["a", "bbb"], "n": [1, 2]}))
    [9, 11]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = batch.num_rows
    totals = [0] * rows
    for column in batch.columns:
        kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
                or pa.types.is_large_binary(kind):
            sizes = pc.fill_null(pc.binary_length(column), 0).to_pylist()
        else:
            width = column.nbytes // max(rows, 1)
            sizes = [width] * rows
        totals = [a + b for a, b in zip(totals, sizes)]
    return totals


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
            compressed = path.lower().endswith(".gz")
            if size > self.max_doc_bytes and not compressed:
                yield DeadLetter(path, f"document larger than --max-doc-bytes ({size} > {self.max_doc_bytes} bytes)",
                                 id=path)
                return
            data = bytearray()
            with open_bounded(readable) as fh:  # decompressed bytes, in blocks: reading stops at the limit
                while len(data) <= self.max_doc_bytes:
                    block = fh.read(min(_READ_BLOCK, self.max_doc_bytes + 1 - len(data)))
                    if not block:
                        break
                    data += block
            if len(data) > self.max_doc_bytes:
                yield DeadLetter(path, f"document larger than --max-doc-bytes (more than {self.max_doc_bytes} "
                                       "bytes decompressed)", id=path)
            else:
                yield document_from_file(path, bytes(data), self.max_doc_bytes)
        elif fmt == "jsonl":
            with open_bounded(readable) as fh:
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
            yield from self._parse_csv(readable, path)
        elif fmt == "parquet":
            yield from self._parse_parquet(readable, path)

    def _parse_csv(self, readable: fileio.ReadableFile, path: str) -> Iterator[Document | DeadLetter]:
        """Rows of a CSV/TSV; a field over the budget or an unbalanced quote ends the file as one dead letter."""
        # Per process, not per file: every reader in it shares the same --max-doc-bytes.
        csv.field_size_limit(self.max_doc_bytes + 1)
        name = path.lower()[:-3] if path.lower().endswith(".gz") else path.lower()
        delimiter = "\t" if name.endswith(".tsv") else ","
        with open_bounded(readable) as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
            lines = _RecordLines(text, CSV_RECORD_FACTOR * self.max_doc_bytes)
            reader = csv.DictReader(lines, delimiter=delimiter, strict=True)
            try:
                if reader.fieldnames is None:
                    return
            except (csv.Error, _RecordTooLarge) as exc:
                yield DeadLetter(f"{path}:1", f"malformed CSV header ({exc}); the file is not read")
                return
            while True:
                start = reader.line_num + 1
                lines.new_record()
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except _RecordTooLarge as exc:
                    yield DeadLetter(f"{path}:{start}", f"CSV record from line {start} {exc}: the rest of the "
                                                        "file is not read")
                    return
                except csv.Error as exc:
                    yield DeadLetter(f"{path}:{start}", f"malformed CSV from line {start} ({exc}, e.g. an "
                                                        "unbalanced quote or a field over --max-doc-bytes): "
                                                        "the rest of the file is not read")
                    return
                source = f"{path}:{reader.line_num}"
                row = {k: v for k, v in row.items() if k is not None}
                if _undecodable(row):
                    yield DeadLetter(source, "undecodable bytes (not UTF-8)")
                elif sum(len(v or "") for v in row.values()) > self.max_doc_bytes:
                    yield DeadLetter(source, f"document larger than --max-doc-bytes ({self.max_doc_bytes} bytes)")
                else:
                    yield document_from_record({k: (v if v != "" else None) for k, v in row.items()},
                                               source, self.fields, extra_metadata=True)

    def _parse_parquet(self, readable: fileio.ReadableFile, path: str) -> Iterator[Document | DeadLetter]:
        """Rows of a Parquet file; a row over the budget is dead-lettered from its Arrow size."""
        import pyarrow.parquet as pq

        with readable.open() as fh:
            n = 0
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=256):
                sizes = parquet_row_bytes(batch)
                keep = [i for i, row_bytes in enumerate(sizes) if row_bytes <= self.max_doc_bytes]
                rows = iter(batch.take(keep).to_pylist() if len(keep) < len(sizes) else batch.to_pylist())
                for row_bytes in sizes:
                    n += 1
                    if row_bytes > self.max_doc_bytes:
                        yield DeadLetter(f"{path}:row{n}", f"document larger than --max-doc-bytes "
                                                           f"({row_bytes} > {self.max_doc_bytes} bytes)")
                    else:
                        yield document_from_record(next(rows), f"{path}:row{n}", self.fields, extra_metadata=True)


CSV_RECORD_FACTOR = 2  # a record's raw text may hold quotes and delimiters besides its --max-doc-bytes of fields


class _RecordTooLarge(Exception):
    pass


class _RecordLines:
    """The CSV reader's lines, at most ``budget`` characters per record (a quoted record spans
    lines; one huge line is read no further than the budget), so a row of many large fields
    is refused while read, not after the reader has built it.

    >>> lines = _RecordLines(io.StringIO("a,b\\n" + "x" * 50 + "\\n"), 10)
    >>> next(lines)
    'a,b\\n'
    >>> lines.new_record(); next(lines)
    Traceback (most recent call last):
    ...
    rag_core.readers._RecordTooLarge: over 10 characters (--max-doc-bytes)
    """

    def __init__(self, text: io.TextIOBase, budget: int) -> None:
        self.text, self.budget, self.used = text, budget, 0

    def new_record(self) -> None:
        self.used = 0

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = self.text.readline(self.budget - self.used + 1)
        if not line:
            raise StopIteration
        self.used += len(line)
        if self.used > self.budget:
            raise _RecordTooLarge(f"over {self.budget} characters (--max-doc-bytes)")
        return line


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

