"""rag_core.sinks: the answer row's columns and formats, derived from one dataclass."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest

from rag_core.errors import ConfigError
from rag_core.sinks import (AnswerSpan, AnswerRow, Source, WriteAnswers, bigquery_schema, csv_header, csv_line,
                            home_dead_letter_path, parquet_schema)

COLUMNS = ["id", "question", "answer", "sources", "model", "index", "answer_generated", "answer_span", "confidence"]
SOURCE_COLUMNS = ["chunk_id", "doc_id", "title", "score", "text", "cited"]


def test_csv_line_quotes_and_encodes_sources() -> None:
    row = {"id": "a", "question": 'He said "hi", then\nleft', "answer": None,
           "sources": [{"chunk_id": "d#0", "doc_id": "d", "title": "T", "score": 0.5, "text": "x"}],
           "model": "m", "index": "i"}
    parsed = next(csv.reader(io.StringIO(csv_line(row))))
    assert parsed[:3] == ["a", 'He said "hi", then\nleft', ""] and json.loads(parsed[3])[0]["doc_id"] == "d"


def test_write_answers_validates() -> None:
    with pytest.raises(ConfigError, match="--output-format"):
        WriteAnswers("o", "xml")
    with pytest.raises(ConfigError, match="--num-shards"):
        WriteAnswers("o", "jsonl", -1)


class TestSchemas:
    def test_every_format_has_the_public_columns_in_order(self) -> None:
        assert csv_header().split(",") == COLUMNS
        assert parquet_schema().names == COLUMNS
        assert [f["name"] for f in bigquery_schema()["fields"]] == COLUMNS
        row = AnswerRow("q", "Why?", None, (Source("d#0", "d", None, 0.5, None, chunk_index=3),), None, None, origin="f:1")
        assert list(row.to_dict()) == COLUMNS and list(row.to_dict()["sources"][0]) == SOURCE_COLUMNS

    def test_internal_fields_are_never_written(self) -> None:
        internal = {f.name for cls in (AnswerRow, Source) for f in dataclasses.fields(cls)
                    if f.metadata.get("internal")}
        assert internal == {"origin", "chunk_index", "context", "retrieval_similarity"}
        sources = bigquery_schema()["fields"][3]
        assert [f["name"] for f in sources["fields"]] == SOURCE_COLUMNS

    def test_bigquery_types_and_modes(self) -> None:
        fields = {f["name"]: f for f in bigquery_schema()["fields"]}
        assert (fields["id"]["mode"], fields["answer"]["mode"], fields["sources"]["mode"]) == (
            "REQUIRED", "NULLABLE", "REPEATED")
        assert fields["sources"]["type"] == "RECORD"
        assert {f["name"]: f["type"] for f in fields["sources"]["fields"]}["score"] == "FLOAT64"

    def test_parquet_types(self) -> None:
        import pyarrow as pa

        schema = parquet_schema()
        assert schema.field("answer").type == pa.string()
        assert schema.field("sources").type.value_type.field("score").type == pa.float64()

    def test_parquet_round_trip(self, tmp_path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        row = AnswerRow("q", "Why?", "A.", (Source("d#0", "d", "T", 0.5, "xA.", True, 0),), "m", "i",
                        answer_generated="It is A.", answer_span=AnswerSpan(0, 1, 3), confidence=0.7).to_dict()
        pq.write_table(pa.Table.from_pylist([row], schema=parquet_schema()), tmp_path / "a.parquet")
        assert pq.read_table(tmp_path / "a.parquet").to_pylist() == [row]


def test_home_dead_letter_path(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BEAM_RAG_HOME", str(tmp_path))
    assert home_dead_letter_path("kb-v1") == str(tmp_path / "dead-letters" / "kb-v1.jsonl")
