"""rag_core.questions: one input line → a question or a dead letter; questions as chunks."""

from __future__ import annotations

from typing import Any

import pytest

from rag_core.errors import ConfigError
from rag_core.questions import (
    Question, ReadQuestions, check_question, duplicate_question, parse_question, to_chunk,
)
from rag_core.types import DeadLetter


class TestParseQuestion:
    @pytest.mark.parametrize("raw, jsonl, expected", [
        (b'{"id": "a", "question": "Why?"}', True, ("a", "Why?")),
        (b'{"id": 12, "question": "  Why?\\u0000 "}', True, ("12", "Why?")),
        (b'{"question": "No id"}', True, ("7", "No id")),
        (b"\xef\xbb\xbfPlain q?", False, ("7", "Plain q?")),
        (b'{"id": true, "question": "x"}', True, "id must be"),
        (b'{"id": "a"}', True, "missing 'question'"),
        (b'{"id": "a", "question": 3}', True, "'question' must be a string"),
        (b'[1, 2]', True, "expected a JSON object"),
        (b'{"id": "a", "question": "x", "filter": "region=north"}', True, "invalid filter"),
        (b'{"id": "a", "question": "x", "filter": {"region": ""}}', True, "invalid filter"),
        (b"x" * 11, False, "question longer than --max-question-chars (11 > 10)"),
    ])
    def test_parse_question(self, raw: bytes, jsonl: bool, expected: Any) -> None:
        result = parse_question(raw, "f:7", "7", jsonl, 10, {"doc_id": "tag", "region": "tag"})
        if isinstance(expected, tuple):
            assert isinstance(result, Question) and (result.id, result.question) == expected
        else:
            assert isinstance(result, DeadLetter) and expected in result.reason and result.source == "f:7"

    def test_blank_line_is_not_a_question(self) -> None:
        assert parse_question(b"  \t", "f:1", "1", True, 10, {}) is None

    def test_valid_filter_is_kept(self) -> None:
        result = parse_question(b'{"id": "a", "question": "x", "filter": {"region": "north"}}', "f:1", "1", True,
                                10, {"region": "tag"})
        assert isinstance(result, Question) and result.filter == {"region": "north"}


class TestCheckQuestion:
    def test_cleans(self) -> None:
        assert check_question("  Why\u0000? ") == "Why?"

    @pytest.mark.parametrize("text, match", [("", "empty"), ("  \u0000 ", "empty"), ("x" * 11, "longer than 10")])
    def test_refuses(self, text: str, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            check_question(text, max_chars=10)


def test_duplicate_question_names_the_first() -> None:
    first, dup = Question("q", "Why?", "f:1"), Question("q", "Again?", "f:9")
    letter = duplicate_question("q", dup, first)
    assert (letter.source, letter.id, letter.stage) == ("f:9", "q", "validate")
    assert letter.reason == "duplicate question id 'q' (first at f:1)" and letter.excerpt == "Again?"


def test_to_chunk_keeps_question_source_and_filter() -> None:
    chunk = to_chunk(Question("q", "Why?", "f:3", {"region": "north"}))
    assert (chunk.id, chunk.content.text) == ("q", "Why?")
    assert chunk.metadata == {"question": "Why?", "source": "f:3", "filter": {"region": "north"}}


@pytest.mark.parametrize("kwargs, match", [({"input_format": "xml"}, "--input-format"),
                                           ({"max_chars": 0}, "--max-question-chars")])
def test_read_questions_validates(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ReadQuestions("q.jsonl", **kwargs)
