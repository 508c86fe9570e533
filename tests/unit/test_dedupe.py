"""rag_core.dedupe: one element per id, the others dead-lettered, in a stable order."""

from __future__ import annotations

import pytest

from rag_core.dedupe import DeduplicateById, Keep, order_key, pick_one, superseded
from rag_core.questions import Question, duplicate_question
from rag_core.sinks import DEAD_LETTER
from rag_core.types import DeadLetter


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
