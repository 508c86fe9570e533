"""rag_core.coverage: question names the passages never mention (pure)."""

from __future__ import annotations

import pytest

from rag_core.coverage import missing_names, question_names, unmatched_negation


@pytest.mark.parametrize("question, names", [
    ("Who founded the Bank of England in 1694?", {"bank", "england", "1694"}),
    ("What did Watt add to Newcomen's engine?", {"watt", "newcomen"}),  # possessive 's dropped
    ("Where is it?", set()),  # the first word is a sentence start, not a name
    ("In which year did The Beatles split?", {"beatles"}),  # stopwords stay out even capitalised
])
def test_question_names(question: str, names: set[str]) -> None:
    assert question_names(question) == names


def test_names_are_matched_as_whole_words_in_any_case_across_all_texts() -> None:
    texts = ["The BANK was founded then.", "England's central bank dates from 1694."]
    assert missing_names("Who founded the Bank of England in 1694?", texts) == 0
    assert missing_names("Who founded the Bank of Scotland in 1695?", texts) == 2
    assert missing_names("Who founded the Bank of Englander?", texts) == 1  # no substring match


def test_no_texts_or_no_names() -> None:
    assert missing_names("Who founded the Bank?", []) == 1
    assert missing_names("who founded it?", ["nothing"]) == 0
    assert missing_names("Who founded the Bank?", [None]) == 1  # type: ignore[list-item]


@pytest.mark.parametrize("question, evidence, unmatched", [
    ("What did the Netherlands not let America use?", ["The Netherlands let America use its bases."], True),
    ("Which country didn't sign the treaty?", ["Italy signed the treaty."], True),  # "n't" inside a word
    ("Which country didn\u2019t sign?", ["Italy signed."], True),  # curly apostrophe
    ("Who never ruled Warsaw?", ["The king ruled Warsaw."], True),
    ("Which country did not sign the treaty?", ["Britain did not sign the treaty."], False),
    ("Which country did not sign the treaty?", ["Italy signed, Britain never did."], False),
    ("What was built without nails?", ["The roof was built without nails."], False),  # no negated question
    ("Which rule has no exception?", ["The first rule has none."], False),
    ("Why did the reform never come into force?", ["It cannot come into force."], False),
    ("Who signed the treaty?", ["Italy signed the treaty."], False),
    ("Is Nothingham a city?", ["Nottingham is a city."], False),  # words, not substrings
    ("Which river does not flow north?", ["The Nile flows north.", "Its delta knows no frost."], False),  # any of them
])
def test_unmatched_negation(question: str, evidence: list[str], unmatched: bool) -> None:
    assert unmatched_negation(question, evidence) is unmatched
