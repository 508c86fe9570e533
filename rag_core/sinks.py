"""Where pipeline results go: the answer rows, their output formats, and the dead letters.

An answer row (:class:`AnswerRow`) has the columns ``id, question, answer, sources,
model, index, answer_generated, answer_span, confidence``; each source (:class:`Source`)
``chunk_id, doc_id, title, score, text, cited``.
The CSV header, the Parquet schema and the BigQuery schema are all derived from
those dataclass fields, so a column is added in one place. Fields marked
``internal`` travel with a row inside the pipeline but are never written.

Every stage routes what it cannot process to the tagged output :data:`DEAD_LETTER`;
one :class:`WriteDeadLetters` writes them all as JSON lines and counts them.

Example:
    >>> row = AnswerRow("q1", "Why?", "Because.", (Source("d#0", "d", "D", 0.5, "t", chunk_index=0),), "m", "i")
    >>> row.to_dict()["sources"]
    [{'chunk_id': 'd#0', 'doc_id': 'd', 'title': 'D', 'score': 0.5, 'text': 't', 'cited': False}]
    >>> csv_header()
    'id,question,answer,sources,model,index,answer_generated,answer_span,confidence'
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

import apache_beam as beam

from rag_core.errors import ConfigError
from rag_core.progress import counter as progress_counter
from rag_core.types import DeadLetter
from rag_core.validation import check_int

__all__ = [
    "DEAD_LETTER", "METRICS_NAMESPACE", "OUTPUT_FORMATS", "AnswerRow", "Source", "WriteAnswers",
    "WriteDeadLetters", "bigquery_schema", "count_rows", "csv_header", "csv_line", "home_dead_letter_path",
    "parquet_schema", "timestamp",
]

DEAD_LETTER = "dead_letter"  # the tagged output of every stage that rejects an element
METRICS_NAMESPACE = "beam_rag"  # every pipeline counter; read back by pipelines.command.read_metrics
OUTPUT_FORMATS = ("jsonl", "csv", "parquet", "bigquery")
_INTERNAL = {"internal": True}


@dataclass(frozen=True)
class Source:
    """One retrieved passage, as the answer row reports it.

    Hits arrive from :mod:`rag_core.enrichment` as dicts (Beam's ``enrichment_data``
    convention); :meth:`from_hit` is the one place that reads them by key.
    """

    chunk_id: str
    doc_id: str
    title: str | None
    score: float
    text: str | None
    cited: bool = False  # the answer was snapped to a span of this passage (see AnswerRow.answer_span)
    chunk_index: int | None = field(default=None, metadata=_INTERNAL)  # merges adjacent chunks in the prompt

    @classmethod
    def from_hit(cls, hit: Mapping[str, Any]) -> "Source":
        """
        >>> Source.from_hit({"chunk_id": "d#1", "doc_id": "d", "score": 0.7, "chunk_index": 1}).title is None
        True
        """
        return cls(hit.get("chunk_id"), hit.get("doc_id"), hit.get("title"), hit.get("score"),  # type: ignore[arg-type]
                   hit.get("text"), chunk_index=hit.get("chunk_index"))

    def to_dict(self) -> dict[str, Any]:
        """The public fields, in column order."""
        return {f.name: getattr(self, f.name) for f in _public_fields(Source)}


@dataclass(frozen=True)
class AnswerSpan:
    """Where the answer is quoted from: ``sources[source].text[start:end] == answer``."""

    source: int
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class AnswerRow:
    """One answered question (``answer`` is None with ``--retrieval-only``).

    ``answer`` is the shortest span of a source that carries the generated answer when
    the generation is grounded there (``answer_span`` says where, and that source has
    ``cited``), else the generated text; ``answer_generated`` is the generator's own
    text, trimmed; ``confidence`` in [0, 1] is what abstention compared with its
    threshold (None when no generator ran).
    """

    id: str
    question: str
    answer: str | None
    sources: tuple[Source, ...]
    model: str | None
    index: str | None
    answer_generated: str | None = None
    answer_span: AnswerSpan | None = None
    confidence: float | None = None
    origin: str = field(default="", metadata=_INTERNAL)  # the question's "path:line", for dead letters
    context: tuple[Any, ...] = field(default=(), metadata=_INTERNAL)  # rag_core.context.ContextSentence
    retrieval_similarity: float | None = field(default=None, metadata=_INTERNAL)  # best sentence cosine

    def to_dict(self) -> dict[str, Any]:
        """The output columns only, in order (sources with their public fields)."""
        out = {f.name: getattr(self, f.name) for f in _public_fields(AnswerRow)}
        out["sources"] = [s.to_dict() for s in self.sources]
        out["answer_span"] = self.answer_span.to_dict() if self.answer_span else None
        return out


# --------------------------------------------------------------------------- schemas


def _public_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


# Python type → (Parquet type name, BigQuery type).
_SCALARS = {str: ("string", "STRING"), float: ("float64", "FLOAT64"), int: ("int64", "INT64"),
            bool: ("bool_", "BOOL")}


def _columns(cls: type) -> Iterator[tuple[str, Any, bool, bool]]:
    """``(name, scalar type or nested dataclass, optional, repeated)`` per public field."""
    hints = typing.get_type_hints(cls)
    for f in _public_fields(cls):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = type(None) in typing.get_args(hint)
        if typing.get_origin(hint) is tuple:  # tuple[X, ...]: a repeated field
            yield f.name, args[0], False, True
        else:
            yield f.name, args[0] if optional else hint, optional, False


def csv_header() -> str:
    return ",".join(name for name, *_ in _columns(AnswerRow))


def csv_line(row: Mapping[str, Any]) -> str:
    """A public row (:meth:`AnswerRow.to_dict`) as one CSV line; ``sources`` as JSON."""
    buf = io.StringIO()
    values = [json.dumps(row.get(name), ensure_ascii=False) if repeated or isinstance(row.get(name), dict) else row.get(name)
              for name, _, _, repeated in _columns(AnswerRow)]
    csv.writer(buf, lineterminator="").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


def parquet_schema() -> Any:
    """The ``pyarrow`` schema of :class:`AnswerRow` (every column nullable)."""
    import pyarrow as pa

    def arrow(cls: type) -> list[tuple[str, Any]]:
        out = []
        for name, kind, _, repeated in _columns(cls):
            typ = pa.struct(arrow(kind)) if dataclasses.is_dataclass(kind) else getattr(pa, _SCALARS[kind][0])()
            out.append((name, pa.list_(typ) if repeated else typ))
        return out

    return pa.schema(arrow(AnswerRow))


def bigquery_schema() -> dict[str, Any]:
    """The BigQuery table schema of :class:`AnswerRow` (fields of ``sources`` without a mode)."""
    def bq(cls: type, top: bool) -> list[dict[str, Any]]:
        out = []
        for name, kind, optional, repeated in _columns(cls):
            column: dict[str, Any] = {"name": name}
            if dataclasses.is_dataclass(kind):
                column.update(type="RECORD", mode="REPEATED" if repeated else "NULLABLE", fields=bq(kind, False))
            else:
                column["type"] = _SCALARS[kind][1]
                if top:
                    column["mode"] = "REPEATED" if repeated else "NULLABLE" if optional else "REQUIRED"
            out.append(column)
        return out

    return {"fields": bq(AnswerRow, True)}


# --------------------------------------------------------------------------- writers


def _shards(num_shards: int) -> dict[str, Any]:
    if num_shards == 0:
        return {"shard_name_template": "", "num_shards": 1}
    return {"num_shards": num_shards}


class WriteAnswers(beam.PTransform):
    """Public rows (:meth:`AnswerRow.to_dict`) → ``output`` in ``fmt`` (one file unless ``num_shards``)."""

    def __init__(self, output: str, fmt: str = "jsonl", num_shards: int = 0):
        super().__init__()
        if fmt not in OUTPUT_FORMATS:
            raise ConfigError(f"--output-format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
        self.output, self.fmt = output, fmt
        self.num_shards = check_int("--num-shards", num_shards, minimum=0)

    def expand(self, rows: beam.PCollection) -> Any:
        shards = _shards(self.num_shards)
        if self.fmt == "jsonl":
            return (rows | "ToJson" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False))
                    | "WriteJsonl" >> beam.io.WriteToText(self.output, **shards))
        if self.fmt == "csv":
            return (rows | "ToCsv" >> beam.Map(csv_line)
                    | "WriteCsv" >> beam.io.WriteToText(self.output, header=csv_header(), **shards))
        if self.fmt == "parquet":
            return rows | "WriteParquet" >> beam.io.WriteToParquet(self.output, parquet_schema(), **shards)
        return rows | "WriteBigQuery" >> beam.io.WriteToBigQuery(
            self.output, schema=bigquery_schema(),
            create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
            write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND)


class _CountFn(beam.DoFn):
    """Counts elements under ``beam_rag/<counter>`` and passes them on, converted by ``convert``."""

    def __init__(self, counter: str, convert: Any = None):
        self.counter = counter
        self.convert = convert
        self._count = progress_counter(METRICS_NAMESPACE, counter)

    def process(self, element: Any) -> Iterator[Any]:
        self._count.inc()
        yield self.convert(element) if self.convert is not None else element


def count_rows(counter: str) -> beam.ParDo:
    """``AnswerRow`` → its public dict, counted under ``beam_rag/<counter>``."""
    return beam.ParDo(_CountFn(counter, AnswerRow.to_dict))


class WriteDeadLetters(beam.PTransform):
    """Dead letters → one JSONL file at ``path``, each counted under ``beam_rag/<counter>``.

    Applied to a tuple/list of PCollections (every stage's :data:`DEAD_LETTER`
    output), which it flattens first.
    """

    def __init__(self, path: str, counter: str):
        super().__init__()
        self.path = path
        self.counter = counter

    def expand(self, letters: Any) -> Any:
        return (letters
                | "AllDeadLetters" >> beam.Flatten()
                | "Count" >> beam.ParDo(_CountFn(self.counter, DeadLetter.to_json))
                | "Write" >> beam.io.WriteToText(self.path, shard_name_template="", num_shards=1))


def home_dead_letter_path(name: str) -> str:
    """``$BEAM_RAG_HOME/dead-letters/<name>.jsonl``: where a run's dead letters go by default."""
    from rag_core.paths import dead_letter_dir

    return str(dead_letter_dir() / f"{name}.jsonl")


def timestamp() -> str:
    """UTC, to the second (``20250101T120000``): names a run's default files."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
