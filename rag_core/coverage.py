"""Names a question uses that the passages it was answered from never mention.

An unanswerable question often looks answerable: SQuAD 2.0's were written against the
very paragraph that answers a neighbouring question, swapping one entity or number
("When did Watt patent ..." over a paragraph about Savery). A retriever still finds
that paragraph, and the generator still answers from it. What gives it away is on the
surface: a name or number the question relies on appears nowhere in the text read.

On 306 SQuAD 2.0 dev questions (two samples, half unanswerable), at least one such
name was missing for 27 of 145 unanswerable questions and for 6 of 161 answerable ones
(paraphrases, spelling variants): a strong but rare signal, so it feeds
:func:`rag_core.answers.confidence` as one term rather than deciding alone.

Example:
    >>> missing_names("When did Watt patent his engine?", ["Savery patented a pump in 1698."])
    1
    >>> missing_names("When did Savery patent his pump?", ["Savery patented a pump in 1698."])
    0
"""

from __future__ import annotations

import re
from typing import Sequence

from rag_core.extraction import STOPWORDS

__all__ = ["missing_names", "question_names"]

_WORD = re.compile(r"[A-Za-z0-9]+")


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
