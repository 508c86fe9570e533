"""rag_core.extraction: question types, typed candidate spans, the chosen answer (pure)."""

from __future__ import annotations

import pytest

from rag_core.extraction import AnswerType, answer_type, best_candidate, candidate_spans


@pytest.mark.parametrize("question, kind", [
    ("When did the war end?", AnswerType.DATE),
    ("In what year was the treaty signed?", AnswerType.DATE),
    ("What decade saw injectors widely used?", AnswerType.DATE),
    ("How many regiments did they furnish?", AnswerType.NUMBER),
    ("What percentage of aid was grants?", AnswerType.NUMBER),
    ("Who described a steam turbine?", AnswerType.NAME),
    ("Where was the population centred?", AnswerType.NAME),
    ("In what borough is the neighbourhood?", AnswerType.NAME),
    ("What is the active form of vitamin D?", None),
    ("Why is the sky blue?", None),
])
def test_answer_type(question: str, kind: AnswerType | None) -> None:
    assert answer_type(question) is kind


@pytest.mark.parametrize("sentence, kind, spans", [
    ("It opened on 4 July 1776 in Philadelphia.", AnswerType.DATE, ["4 July 1776"]),
    ("Injectors spread in the 1850s.", AnswerType.DATE, ["1850s"]),
    ("It was rebuilt in the 20th century.", AnswerType.DATE, ["20th century"]),
    ("Workers get at least 4 weeks paid holidays.", AnswerType.NUMBER, ["4 weeks"]),
    ("The endowment was $32 billion, 88% of it grants.", AnswerType.NUMBER, ["$32 billion", "88%"]),
    ("It ruled France, Spain and Navarre.", AnswerType.NAME, ["France", "Spain and Navarre"]),
    ("He joined the U.S. Navy in St. Louis.", AnswerType.NAME, ["U.S. Navy", "St. Louis"]),
    ("In 1629 Giovanni Branca visited the League of Augsburg.", AnswerType.NAME,
     ["Giovanni Branca", "League of Augsburg"]),
])
def test_candidate_spans(sentence: str, kind: AnswerType, spans: list[str]) -> None:
    assert [sentence[a:b] for a, b in candidate_spans(sentence, kind)] == spans


def test_picks_the_candidate_next_to_the_question_words() -> None:
    sentences = ["Louis XIV ruled France, Spain and Navarre.",
                 "In 1688 William of Orange formed a coalition to oppose Louis."]
    assert best_candidate("What coalition rose up to oppose Louis XIV's France?", sentences) is None  # open
    got = best_candidate("Who formed a coalition to oppose Louis?", sentences)
    assert got is not None and got.text == "William of Orange" and got.sentence == 1
    assert sentences[got.sentence][got.start:got.end] == got.text


def test_prefers_the_sentence_that_shares_the_question_words() -> None:
    sentences = ["The mill was sold in 1801.", "Savery patented his steam pump in 1698."]
    got = best_candidate("In what year did Savery patent his steam pump?", sentences, generated="1712")
    assert got is not None and got.text == "1698"


def test_agreement_with_the_generation_breaks_ties() -> None:
    sentences = ["The prize went to Marie Curie and Pierre Curie."]
    got = best_candidate("Who won the prize?", sentences, generated="Pierre Curie won it")
    assert got is not None and got.text == "Marie Curie and Pierre Curie"  # one name run, not split
    sentences = ["The prize went to Marie Curie, then to Pierre Curie."]
    got = best_candidate("Who won the prize?", sentences, generated="Pierre Curie won it")
    assert got is not None and got.text == "Pierre Curie"


def test_question_words_are_trimmed_from_a_name() -> None:
    sentences = ["The Warsaw Stock Exchange is the largest in the region."]
    got = best_candidate("Where is the Warsaw exchange?", sentences)
    assert got is not None and got.text == "Stock"


@pytest.mark.parametrize("question, sentences", [
    ("What is calcitriol?", ["Calcitriol is the active form of vitamin D."]),  # open question
    ("In what year was it built?", ["It was built long ago."]),  # no candidate of the type
    ("Who founded Harvard?", ["Harvard was founded early."]),  # only the question's own words
    ("When was it built?", []),
])
def test_no_candidate(question: str, sentences: list[str]) -> None:
    assert best_candidate(question, sentences) is None
