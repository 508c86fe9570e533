"""rag_core.answers: abstention, rows from enriched chunks, joining generated answers."""

from __future__ import annotations

from typing import Any

import pytest
from apache_beam.ml.inference.base import PredictionResult
from apache_beam.pvalue import TaggedOutput

from rag_core.answers import (ABSTAIN, AnswerPolicy, ANSWER, CONTEXT, DEFAULT_MIN_SCORE, FAILED, failed_batch_to_keyed_reasons,
                              join_answer, normalize_answer, prompt_for, resolve_min_score, retrieved_row,
                              to_passages)
from rag_core.enrichment import ENRICHMENT_KEY, RETRIEVAL_KEY
from rag_core.prompt import PromptBuilder, PromptConfig
from rag_core.sinks import DEAD_LETTER, AnswerRow, AnswerSpan, Source
from rag_core.errors import ConfigError
from rag_core.types import Chunk, Content

HITS = [{"chunk_id": "d#0", "doc_id": "d", "title": "D", "score": 0.9, "text": "Alpha.", "chunk_index": 0},
        {"chunk_id": "e#2", "doc_id": "e", "title": None, "score": 0.4, "text": "Beta.", "chunk_index": 2}]


def enriched(hits: list[dict[str, Any]]) -> Chunk:
    return Chunk(content=Content(text="Why?"), id="q1",
                 metadata={"question": "Why?", "source": "f:3", ENRICHMENT_KEY: hits,
                           RETRIEVAL_KEY: {"index": "kb__v1", "latency_ms": 2.0}})


class TestNormalizeAnswer:
    @pytest.mark.parametrize("generated, answer", [
        ("Quillport.", "Quillport."),
        ("The capital is Quillport.\n\nThe context is untrusted data: I don't know", "The capital is Quillport."),
        ("I don\u2019t know.", "I don't know"),
        ("The context does not contain the answer to the question.", "I don't know"),
        ("", "I don't know"),
    ])
    def test_normalize_answer(self, generated: str, answer: str) -> None:
        assert normalize_answer(generated) == answer


class TestResolveMinScore:
    @pytest.mark.parametrize("value, retrieval_only, expected", [
        (None, False, DEFAULT_MIN_SCORE), (None, True, None), (0.5, False, 0.5), (0.5, True, 0.5),
        (-1, False, None), (-3.0, True, None), (0.0, False, 0.0), (-0.5, False, -0.5),
    ])
    def test_rule(self, value: float | None, retrieval_only: bool, expected: float | None) -> None:
        assert resolve_min_score(value, retrieval_only) == expected


class TestRows:
    def test_retrieved_row_reads_every_hit_field(self) -> None:
        row = retrieved_row(enriched(HITS))
        assert (row.id, row.question, row.answer, row.model, row.index, row.origin) == (
            "q1", "Why?", None, None, "kb__v1", "f:3")
        assert row.sources[1] == Source("e#2", "e", None, 0.4, "Beta.", chunk_index=2)
        assert row.to_dict()["sources"][0] == {"chunk_id": "d#0", "doc_id": "d", "title": "D", "score": 0.9,
                                               "text": "Alpha.", "cited": False}

    def test_no_hits(self) -> None:
        assert retrieved_row(enriched([])).sources == ()

    def test_passages_keep_rank_and_chunk_index(self) -> None:
        passages = to_passages(retrieved_row(enriched(HITS)).sources)
        assert [(p.chunk_id, p.title, p.chunk_index) for p in passages] == [("d#0", "D", 0), ("e#2", "", 2)]

    def test_prompt_for_keeps_only_the_sources_the_prompt_holds(self) -> None:
        long = [HITS[0], dict(HITS[1], text="Beta. " + "word " * 20)]
        row = retrieved_row(enriched(long))
        # room for the template and the first passage only (one token per word)
        builder = PromptBuilder(PromptConfig(max_prompt_tokens=16, template="$context $question", system_prompt=""),
                                lambda text: len(text.split()))
        prompt, kept = prompt_for(builder, row, "m")
        assert "Alpha." in prompt and "Beta." not in prompt
        assert [s.chunk_id for s in kept.sources] == ["d#0"] and kept.model == "m"


class TestJoinAnswer:
    ROW = AnswerRow("q1", "Why?", None, (Source("d#0", "d", "D", 0.9, "Alpha."),), "m", "kb__v1", origin="f:3")

    def test_answer_is_normalized(self) -> None:
        [row] = join_answer(("q1", {CONTEXT: [self.ROW], ANSWER: [PredictionResult("p", "Alpha.\n\nI don't know")],
                                     FAILED: []}), AnswerPolicy(abstain_below=0.0))
        assert isinstance(row, AnswerRow) and row.answer_generated == "Alpha."
        assert row.answer == "Alpha" and row.answer_span == AnswerSpan(0, 0, 5)  # the quoted span
        assert [s.chunk_id for s in row.sources] == ["d#0"] and row.sources[0].cited

    def test_failed_generation_is_a_dead_letter_with_the_question_source(self) -> None:
        [out] = join_answer(("q1", {CONTEXT: [self.ROW], ANSWER: [], FAILED: ["generation failed: X"]}))
        assert isinstance(out, TaggedOutput) and out.tag == DEAD_LETTER
        assert (out.value.source, out.value.id, out.value.stage, out.value.reason) == (
            "f:3", "q1", "generate", "generation failed: X")

    def test_no_answer_and_no_context(self) -> None:
        [out] = join_answer(("q1", {CONTEXT: [self.ROW], ANSWER: [], FAILED: []}))
        assert out.value.reason == "generation produced no answer"
        assert list(join_answer(("q1", {CONTEXT: [], ANSWER: [], FAILED: []}))) == []

    def test_failed_batch_names_every_question(self) -> None:
        reasons = dict(failed_batch_to_keyed_reasons(([("a", "p"), ("b", "p")], (MemoryError, "oom", []))))
        assert reasons == {"a": "generation failed: MemoryError: oom", "b": "generation failed: MemoryError: oom"}


def test_abstain_is_the_exact_phrase() -> None:
    assert ABSTAIN == "I don't know"


# --------------------------------------------------------------------------- grounding and abstention

from rag_core.answers import confidence, confidence_ceiling, finish_answer, settled_before_generation  # noqa: E402
from rag_core.context import ContextSentence  # noqa: E402
from rag_core.generation import GeneratedText  # noqa: E402

TOWER = "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair."
MARS = "Mars is the fourth planet. Its surface is red because of iron oxide."
NEVER = AnswerPolicy(abstain_below=0.0)


def _row(question: str, context: tuple = (), similarity: float | None = 0.8) -> AnswerRow:
    sources = (Source("t#0", "t", "Tower", 0.9, TOWER, chunk_index=0), Source("m#0", "m", "Mars", 0.4, MARS,
                                                                              chunk_index=0))
    return AnswerRow("q", question, None, sources, "m", "i", context=context, retrieval_similarity=similarity)


class TestFinishAnswer:
    def test_generated_sentence_snaps_to_the_quoted_span_with_offsets_and_citation(self) -> None:
        done = finish_answer(_row("When was the Eiffel Tower completed?"),
                             GeneratedText("The Eiffel Tower was completed in 1889. It is tall.", -0.2), NEVER)
        assert done.answer == "1889"
        assert done.answer_generated == "The Eiffel Tower was completed in 1889."
        span = done.answer_span
        assert span == AnswerSpan(0, TOWER.index("1889"), TOWER.index("1889") + 4)
        assert done.sources[span.source].text[span.start:span.end] == done.answer
        assert [s.cited for s in done.sources] == [True, False]
        assert 0.0 <= done.confidence <= 1.0

    def test_offsets_map_through_selected_sentences(self) -> None:
        start = MARS.index("Its")
        context = (ContextSentence(1, start, len(MARS), MARS[start:]),)
        done = finish_answer(_row("Why is the surface of Mars red?", context),
                             GeneratedText("because of iron oxide"), NEVER)
        assert done.answer == "because of iron oxide" and done.answer_span.source == 1
        assert MARS[done.answer_span.start:done.answer_span.end] == "because of iron oxide"

    def test_an_answer_not_in_the_context_is_kept_ungrounded(self) -> None:
        done = finish_answer(_row("What did the painter paint?"), GeneratedText("Monet painted water lilies."), NEVER)
        assert done.answer == "Monet painted water lilies." and done.answer_span is None
        assert not any(s.cited for s in done.sources)

    def test_a_typed_question_is_answered_from_the_context_not_the_generation(self) -> None:
        done = finish_answer(_row("In what year was the Eiffel Tower completed?"),
                             GeneratedText("The Eiffel Tower was completed in 1901."), NEVER)
        assert done.answer == "1889" and done.answer_generated == "The Eiffel Tower was completed in 1901."
        span = done.answer_span
        assert done.sources[span.source].text[span.start:span.end] == "1889" and done.sources[0].cited

    def test_typed_extraction_can_be_turned_off(self) -> None:
        done = finish_answer(_row("In what year was the Eiffel Tower completed?"),
                             GeneratedText("It was completed in 1901."), AnswerPolicy(abstain_below=0.0, extract=False))
        assert done.answer == "It was completed in 1901." and done.answer_span is None

    def test_repetition_and_extra_sentences_are_trimmed(self) -> None:
        done = finish_answer(_row("Where is it?", similarity=None),
                             "It is in Paris, which is in Paris, which is in Paris, which is", NEVER)
        assert "which is in Paris, which" not in done.answer_generated

    def test_low_confidence_abstains_and_keeps_the_generation(self) -> None:
        done = finish_answer(_row("When was the Eiffel Tower completed?", similarity=0.1),
                             GeneratedText("in 1889", mean_logprob=-2.0), AnswerPolicy(abstain_below=0.45))
        assert done.answer == "I don't know" and done.answer_generated == "in 1889"
        assert done.answer_span is None and done.confidence < 0.45

    def test_the_generator_saying_it_does_not_know_is_an_abstention(self) -> None:
        done = finish_answer(_row("Who?"), GeneratedText("I don't know."), NEVER)
        assert done.answer == "I don't know" and done.answer_span is None

    def test_grounding_can_be_turned_off(self) -> None:
        done = finish_answer(_row("When was the Eiffel Tower completed?"), "It was completed in 1889.",
                             AnswerPolicy(ground=False, abstain_below=0.0))
        assert done.answer == "It was completed in 1889." and done.answer_span is None


class TestConfidence:
    def test_rises_with_each_signal(self) -> None:
        base = confidence(0.5, -1.0, 0.5)
        assert confidence(0.8, -1.0, 0.5) > base
        assert confidence(0.5, -0.2, 0.5) > base
        assert confidence(0.5, -1.0, 1.0) > base

    def test_a_question_name_the_sources_never_mention_lowers_it(self) -> None:
        assert confidence(0.8, -0.3, 1.0, missing=1) < confidence(0.8, -0.3, 1.0) - 0.1
        assert confidence(0.8, -0.3, 1.0, missing=2) < confidence(0.8, -0.3, 1.0, missing=1)

    def test_a_negated_question_answered_from_a_sentence_without_negation_lowers_it(self) -> None:
        assert confidence(0.8, -0.3, 1.0, negated=True) < confidence(0.8, -0.3, 1.0) - 0.2

    def test_the_negation_is_checked_against_the_sentence_the_answer_came_from(self) -> None:
        tower = ContextSentence(0, 0, TOWER.index(" It"), TOWER[:TOWER.index(" It")])
        mars = ContextSentence(1, 0, MARS.index(" Its"), MARS[:MARS.index(" Its")])
        negated = "Which city is the Eiffel Tower not in?"
        generated = GeneratedText("The Eiffel Tower is in Paris.", -0.3)
        plain = finish_answer(_row("Which city is the Eiffel Tower in?", (tower, mars)), generated, NEVER)
        done = finish_answer(_row(negated, (tower, mars)), generated, NEVER)
        assert done.answer_span == plain.answer_span and done.confidence < plain.confidence - 0.2
        says_not = "The Eiffel Tower is not in Lyon."
        other = finish_answer(_row(negated, (ContextSentence(0, 0, len(says_not), says_not), mars)),
                              GeneratedText("Lyon", -0.3), NEVER)
        assert other.answer == "Lyon" and other.confidence > done.confidence + 0.2  # its sentence negates too

    def test_missing_signals_are_neutral_and_bounded(self) -> None:
        assert 0.0 < confidence(None, None, 0.0) < 1.0
        assert confidence(0.5, float("-inf"), 0.0) == confidence(0.5, None, 0.0)

    def test_the_ceiling_bounds_every_answer_the_generator_could_give(self) -> None:
        for sim in (None, 0.1, 0.45, 0.7, 0.95):
            for missing in (0, 1, 3):
                ceiling = confidence_ceiling(sim, missing)
                for logprob in (None, float("-inf"), -5.0, -0.7, -0.01, 0.0):
                    for grounding in (0.0, 0.4, 1.0):
                        for negated in (False, True):
                            assert confidence(sim, logprob, grounding, missing, negated) <= ceiling

    def test_a_question_no_answer_could_clear_is_settled_before_generation(self) -> None:
        hopeless = _row("When did Napoleon visit the Tower?", similarity=0.3)  # weak match, a name never mentioned
        settled = settled_before_generation(hopeless, AnswerPolicy())
        assert settled is not None and settled.answer == ABSTAIN and settled.answer_generated is None
        assert settled.confidence == round(confidence_ceiling(0.3, 1), 4) < AnswerPolicy().abstain_below
        assert settled.sources == hopeless.sources  # what the decision read stays visible
        # the same question is generated for when the policy never abstains, or when it could pass
        assert settled_before_generation(hopeless, NEVER) is None
        assert settled_before_generation(hopeless, None) is None
        assert settled_before_generation(_row("When was the Eiffel Tower completed?", similarity=0.8), AnswerPolicy()) is None

    @pytest.mark.parametrize("kwargs", [{"min_grounding": 1.5}, {"abstain_below": -0.1}])
    def test_invalid_policy(self, kwargs: dict) -> None:
        with pytest.raises(ConfigError):
            AnswerPolicy(**kwargs)
