"""rag_core.documents: one record, line or file → a Document or a dead letter, hostile input included."""

from __future__ import annotations

import json

import pytest

from rag_core.documents import (
    MAX_METADATA_KEYS, FieldMap, document_from_file, document_from_json_line, document_from_record,
)
from rag_core.types import DeadLetter, Document


def line(obj) -> bytes:
    return json.dumps(obj).encode()


class TestJsonLine:
    def test_valid_document(self):
        doc = document_from_json_line(line({"id": "a", "text": "hello", "title": "T", "url": "u",
                                            "metadata": {"lang": "en", "year": 2020}}), "f:1")
        assert doc == Document(id="a", text="hello", title="T", url="u",
                               metadata={"lang": "en", "year": 2020}, source="f:1")

    def test_integer_id_becomes_string(self):
        assert document_from_json_line(line({"id": 7, "text": "x"}), "f:1").id == "7"

    def test_blank_line_is_not_a_document(self):
        assert document_from_json_line(b"   ", "f:3") is None

    @pytest.mark.parametrize("raw, reason", [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "must be an object"),
        (b"\xff\xfe{}", "undecodable bytes"),
        (line({"text": "x"}), "missing id"),
        (line({"id": "", "text": "x"}), "missing id"),
        (line({"id": "a"}), "missing text"),
        (line({"id": "a", "text": "   "}), "empty text"),
        (line({"id": "a", "text": 5}), "text must be a string"),
        (line({"id": ["a"], "text": "x"}), "id must be a string"),
        (line({"id": True, "text": "x"}), "id must be a string"),
        (line({"id": "a", "text": "x", "metadata": "nope"}), "metadata must be an object"),
        (line({"id": "a", "text": "x", "metadata": {"bad key": "v"}}), "metadata key"),
        (line({"id": "a", "text": "x", "metadata": {"a}|*": "v"}}), "metadata key"),
        (line({"id": "a", "text": "x", "metadata": {"text": "v"}}), "reserved"),
        (line({"id": "a", "text": "x", "metadata": {"k": {"nested": 1}}}), "string or number"),
        (line({"id": "a", "text": "x", "title": 3}), "title and url must be strings"),
    ])
    def test_bad_input_is_dead_lettered_with_reason(self, raw, reason):
        result = document_from_json_line(raw, "f:9")
        assert isinstance(result, DeadLetter)
        assert reason in result.reason
        assert result.source == "f:9"

    def test_oversized_line_is_dead_lettered_without_parsing(self):
        result = document_from_json_line(b"x" * 101, "f:1", max_doc_bytes=100)
        assert isinstance(result, DeadLetter) and "--max-doc-bytes" in result.reason

    def test_control_characters_are_removed(self):
        doc = document_from_json_line(line({"id": "a\x00b", "text": "he\x07llo\r\nworld\t!"}), "f:1")
        assert doc.id == "ab" and doc.text == "hello\nworld\t!"

    def test_hostile_metadata_values_are_kept_as_data(self):
        doc = document_from_json_line(line({"id": "a", "text": "x", "metadata": {"tag": "a|b}*@x:{y}"}}), "f:1")
        assert doc.metadata == {"tag": "a|b}*@x:{y}"}


class TestRecordAndFile:
    def test_csv_row_extra_columns_become_metadata(self):
        doc = document_from_record({"doc_id": "1", "body": "t", "name": "N", "lang": "en"}, "f.csv:2",
                                   FieldMap(id_field="doc_id", text_field="body", title_field="name"),
                                   extra_metadata=True)
        assert (doc.id, doc.text, doc.title, doc.metadata) == ("1", "t", "N", {"lang": "en"})

    def test_markdown_file_title_from_heading(self):
        doc = document_from_file("docs/a.md", b"intro\n# The Title\nbody")
        assert doc.id == "docs/a.md" and doc.title == "The Title"

    def test_undecodable_file(self):
        assert "undecodable" in document_from_file("a.txt", b"\xff\xfe\xfa").reason

    def test_dead_letter_round_trips_as_json(self):
        dl = DeadLetter("f:1", "why", id="x")
        assert DeadLetter.from_json(dl.to_json()) == dl


class TestHostileDocuments:
    def test_bom_is_not_content(self) -> None:
        doc = document_from_json_line(b'\xef\xbb\xbf{"id": "a", "text": "t"}', "s")
        assert isinstance(doc, Document) and doc.id == "a"

    @pytest.mark.parametrize("record, reason", [
        ({"id": "\x00\x01", "text": "t"}, "empty once control characters are removed"),
        ({"id": "a", "text": "t", "metadata": {"n": 10**400}}, "out of range"),
        ({"id": "a", "text": "t", "metadata": {f"k{i}": i for i in range(MAX_METADATA_KEYS + 1)}},
         "too many metadata keys"),
        ({"id": "a", "text": "t", "metadata": {"region\n": "x"}}, "is not allowed"),
    ])
    def test_dead_lettered(self, record: dict, reason: str) -> None:
        result = document_from_record(record, "s")
        assert isinstance(result, DeadLetter) and reason in result.reason

    def test_big_but_finite_numbers_are_kept(self) -> None:
        result = document_from_record({"id": "a", "text": "t", "metadata": {"n": 10**300, "f": 1e308}}, "s")
        assert isinstance(result, Document) and result.metadata["n"] == 10**300


def test_ids_and_metadata_are_nfc() -> None:
    from rag_core.documents import FieldMap, document_from_record

    doc = document_from_record({"id": "cafe\u0301", "text": "x", "metadata": {"city": "Bogota\u0301"}}, "s:1",
                               FieldMap())
    assert isinstance(doc, Document) and doc.id == "caf\u00e9" and doc.metadata["city"] == "Bogot\u00e1"
