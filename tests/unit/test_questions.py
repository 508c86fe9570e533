"""rag_core.questions: one input line → a question or a dead letter; questions as chunks."""

from __future__ import annotations

from typing import Any

import pytest

from rag_core.dedupe import DeduplicateById, Keep, order_key, pick_one, superseded
from rag_core.errors import ConfigError
from rag_core.questions import (Question, ReadQuestions, check_question, duplicate_question, parse_question,
                                to_chunk)
from rag_core.sinks import DEAD_LETTER
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


class TestDeduplicateById:
    """The keep-first (questions) / keep-last (documents) rule, explicit at each call site."""

    QUESTIONS = [Question("q", "third", "f:10"), Question("q", "first", "f:2"), Question("q", "second", "f:9"),
                 Question("r", "alone", "f:1")]

    @pytest.mark.parametrize("keep, kept", [(Keep.FIRST, "first"), (Keep.LAST, "third")])
    def test_pick_one_orders_by_path_then_line_number(self, keep: Keep, kept: str) -> None:
        out = list(pick_one("q", self.QUESTIONS[:3], keep, duplicate_question))
        winners = [o for o in out if isinstance(o, Question)]
        letters = [o.value for o in out if not isinstance(o, Question)]
        assert [w.question for w in winners] == [kept] and len(letters) == 2
        assert all(isinstance(d, DeadLetter) and d.id == "q" for d in letters)

    def test_superseded_is_the_build_wording(self) -> None:
        from rag_core.types import Document

        docs = [Document("a", "new", source="x.jsonl:12"), Document("a", "old", source="x.jsonl:3")]
        [letter] = [o.value for o in pick_one("a", docs, Keep.LAST, superseded) if not isinstance(o, Document)]
        assert (letter.source, letter.reason, letter.stage) == ("x.jsonl:3", "duplicate id: superseded by x.jsonl:12",
                                                                "dedupe")

    def test_order_key(self) -> None:
        assert sorted(["f:10", "f:9", "e:100"], key=order_key) == ["e:100", "f:9", "f:10"]
        assert order_key("p.parquet:row7") == ("p.parquet", 7)

    @pytest.mark.parametrize("keep, kept", [(Keep.FIRST, "first"), ("last", "third")])
    def test_transform(self, keep: Keep | str, kept: str) -> None:
        import apache_beam as beam
        from apache_beam.testing.test_pipeline import TestPipeline
        from apache_beam.testing.util import assert_that, equal_to

        with TestPipeline() as p:
            out = p | beam.Create(self.QUESTIONS) | DeduplicateById(keep, duplicate_question)
            assert_that(out.unique | "Texts" >> beam.Map(lambda q: q.question), equal_to([kept, "alone"]),
                        label="unique")
            assert_that(out[DEAD_LETTER] | "Ids" >> beam.Map(lambda d: d.id), equal_to(["q", "q"]),
                        label="dead")
