"""What a question asks for that the text it was answered from does not say: its names, its negation.

An unanswerable question often looks answerable: SQuAD 2.0's were written against the
very paragraph that answers a neighbouring question, swapping one entity or number
("When did Watt patent ..." over a paragraph about Savery). A retriever still finds
that paragraph, and the generator still answers from it. What gives it away is on the
surface: a name or number the question relies on appears nowhere in the text read.

On 306 SQuAD 2.0 dev questions (two samples, half unanswerable), at least one such
name was missing for 27 of 145 unanswerable questions and for 6 of 161 answerable ones
(paraphrases, spelling variants): a strong but rare signal, so it feeds
:func:`rag_core.answers.confidence` as one term rather than deciding alone.

The same trick with a negation ("What did the Netherlands *not* let America use?" over a
sentence saying what it did let it use): a question that asks what did not happen, answered
from a sentence that says nothing is not, is answering another question
(:func:`unmatched_negation`).

Example:
    >>> missing_names("When did Watt patent his engine?", ["Savery patented a pump in 1698."])
    1
    >>> missing_names("When did Savery patent his pump?", ["Savery patented a pump in 1698."])
    0
    >>> unmatched_negation("Who did not sign the treaty?", ["France signed the treaty in 1951."])
    True
    >>> unmatched_negation("Who did not sign the treaty?", ["Britain never signed it."])
    False
"""

from __future__ import annotations

import re
from typing import Sequence

from rag_core.extraction import STOPWORDS

__all__ = ["missing_names", "question_names", "unmatched_negation"]

_WORD = re.compile(r"[A-Za-z0-9]+")
# What negates a question ("did not", "never", "didn't", "no longer"), and what an answer's
# sentence may say it with: those, or "without", "neither ... nor", "cannot", "none".
_QUESTION_NEGATORS = "not|never|no"
_QUESTION_NEGATION = re.compile(rf"\b(?:{_QUESTION_NEGATORS})\b|n['\u2019]t\b", re.IGNORECASE)
_NEGATION = re.compile(rf"\b(?:{_QUESTION_NEGATORS}|none|neither|nor|without|cannot|nobody|nothing|nowhere)\b"
                       r"|n['\u2019]t\b", re.IGNORECASE)


def question_names(question: str) -> set[str]:
    """The question's capitalised words and numbers, lower-cased, except its first word
    (capitalised as a sentence start) and stopwords ("The", "In").

    >>> sorted(question_names("In what year did the Treaty of Rome enter force in 1958?"))
    ['1958', 'rome', 'treaty']
    """
    names: set[str] = set()
    for match in _WORD.finditer(question):
        word = match.group()
        if match.start() == 0 or len(word) < 2 or word.lower() in STOPWORDS:
            continue
        if word[0].isupper() or word.isdigit():
            names.add(word.lower())
    return names


def missing_names(question: str, texts: Sequence[str]) -> int:
    """How many of :func:`question_names` occur in none of ``texts`` (whole words, any case)."""
    names = question_names(question)
    if not names:
        return 0
    seen = {word.lower() for text in texts for word in _WORD.findall(text or "")}
    return len(names - seen)


def unmatched_negation(question: str, evidence: Sequence[str]) -> bool:
    """Whether ``question`` is negated and none of ``evidence`` (the sentence the answer was
    read from) says any negation.

    On SQuAD 2.0 dev questions 13 of 14 negated ones were unanswerable: inserting a "not" is
    one of the ways its unanswerable questions were written. A negated question answered
    from a sentence that negates something too ("Britain never signed") may be right, so
    only the unmatched case counts; it is one term of :func:`rag_core.answers.confidence`.

    >>> unmatched_negation("Who signed the treaty?", ["France did not."])
    False
    >>> unmatched_negation("Why didn’t France sign?", ["France signed it."]), unmatched_negation("Why not?", [])
    (True, True)
    """
    if not _QUESTION_NEGATION.search(question):
        return False
    return not any(_NEGATION.search(text or "") for text in evidence)
