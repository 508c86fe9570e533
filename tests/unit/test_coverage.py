"""rag_core.coverage: question names the passages never mention (pure)."""

from __future__ import annotations

import pytest

from rag_core.coverage import missing_names, question_names


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
