"""Snap a generated answer to the shortest span of the context that carries it.

A generator usually finds the right passage but buries the answer in a sentence
that restates the question ("The Normans were in Normandy in the 10th and 11th
centuries."). :func:`snap_to_span` finds the word window of one passage that best
matches the answer's *content* words (token F1, SQuAD style), so the answer becomes
a verifiable quote with character offsets, and its score says how well grounded it
is (a low score: treat the answer as not grounded).

Content words are the answer's words without the question's words (unless nothing
would be left) and without stopwords; windows start and end on a content word, so a
span never begins or ends with "in", "of" or "was", and the stopwords and question
words inside a window do not lower its precision. Windows are at most
``max_span_tokens`` long and only start at passage words the answer contains, so the
search costs about (matching words) x (matching words within a window), not n^3.

Example:
    >>> passage = "Normandy was named after the Normans, who were in Normandy in the 10th and 11th centuries."
    >>> g = snap_to_span("The Normans were in Normandy in the 10th and 11th centuries.", [passage],
    ...                  "When were the Normans in Normandy?")
    >>> g.text, g.score, passage[g.start:g.end] == g.text
    ('10th and 11th centuries', 1.0, True)
"""

from __future__ import annotations

import functools
import itertools
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from rag_core.errors import ConfigError
from rag_core.validation import check_int

__all__ = ["ARTICLES", "EDGE_STOPWORDS", "Grounding", "Token", "normalize_tokens", "snap_to_span"]

ARTICLES = frozenset({"a", "an", "the"})  # removed, as SQuAD's normalisation does
# Function words that carry no answer: not matched as content, never at a span's edge.
EDGE_STOPWORDS = frozenset(
    "in of on at to for by with from as into onto over under about between during after before since "
    "is are was were be been being am and or but nor so than then also it its this that these those "
    "which who whom whose what when where why how do does did done has have had having will would can "
    "could shall should may might must there their they them he she his her him i you we us our your "
    "my me".split()
)
_ASCII_PUNCT = (string.punctuation, dict.fromkeys(map(ord, string.punctuation)))
# A chunk of non-space text, or one CJK / kana / hangul character (those scripts need no spaces).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CHUNK = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_SPACED = re.compile(r"\S+")


class Token(NamedTuple):
    """A normalised word and where it came from: ``source[start:end]`` (punctuation trimmed)."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Grounding:
    """The answer as a span of one passage: ``passages[passage_index][start:end] == text``."""

    passage_index: int
    start: int
    end: int
    text: str
    score: float  # token F1 of the span's content words against the answer's, in [0, 1]


@functools.cache
def _punctuation() -> tuple[str, dict[int, None]]:
    """Every punctuation character (ASCII, and Unicode category P in the BMP), built once."""
    chars = set(string.punctuation)
    chars.update(ch for ch in map(chr, range(0x80, 0x10000)) if unicodedata.category(ch).startswith("P"))
    joined = "".join(sorted(chars))
    return joined, dict.fromkeys(map(ord, joined))


def _tokenize(text: str) -> list[tuple[str, int, int]]:
    """:func:`normalize_tokens` as plain tuples (the hot path of :func:`snap_to_span`)."""
    ascii_punct, ascii_drop = _ASCII_PUNCT
    tokens: list[tuple[str, int, int]] = []
    for m in _SPACED.finditer(text):
        start, end = m.span()
        chunk = text[start:end]
        if not chunk.isascii():
            _add_unicode_chunk(chunk, start, tokens)
            continue
        if not chunk.isalnum():  # str.strip is fast with ASCII punctuation only
            core = chunk.strip(ascii_punct)
            if not core:
                continue
            start += len(chunk) - len(chunk.lstrip(ascii_punct))
            end = start + len(core)
            chunk = core.translate(ascii_drop)
        word = chunk.lower()
        if word not in ARTICLES:
            tokens.append((word, start, end))
    return tokens


def _add_unicode_chunk(chunk: str, offset: int, tokens: list[tuple[str, int, int]]) -> None:
    """Append the tokens of a non-ASCII chunk: CJK characters one by one, all punctuation dropped."""
    punct, drop = _punctuation()
    for m in _CHUNK.finditer(chunk):
        piece = m.group()
        start = offset + m.start()
        if not piece.isalnum():
            core = piece.strip(punct)
            if not core:
                continue
            start += len(piece) - len(piece.lstrip(punct))
            piece = core
        end = start + len(piece)
        word = piece.translate(drop).lower()
        if word and word not in ARTICLES:
            tokens.append((word, start, end))


def normalize_tokens(text: str) -> list[Token]:
    """SQuAD-normalised tokens of ``text``, each with its character offsets.

    Lower case, punctuation removed (ASCII as in SQuAD, and Unicode punctuation such as
    curly quotes), the articles a/an/the dropped, split on whitespace; CJK characters
    are one token each. A token's offsets span its first to last non-punctuation character.

    >>> [(t.text, t.start, t.end) for t in normalize_tokens("The (Eiffel) Tower's height: 330 m.")]
    [('eiffel', 5, 11), ('towers', 13, 20), ('height', 21, 27), ('330', 29, 32), ('m', 33, 34)]
    """
    if not isinstance(text, str):
        raise ConfigError(f"text must be a string, got {type(text).__name__}")
    return [Token(word, start, end) for word, start, end in _tokenize(text)]


def _content(answer: list[str], question: frozenset[str]) -> tuple[Counter[str], frozenset[str]]:
    """The answer's words to match, and the passage words that do not count towards a window's length.

    Stopwords (and the question's words, when they are left out of the answer) are
    neutral: a window is not penalised for holding them. If no other word is left,
    they are matched and counted like any word.
    """
    for words, neutral in (
        ([w for w in answer if w not in question and w not in EDGE_STOPWORDS], EDGE_STOPWORDS | question),
        ([w for w in answer if w not in EDGE_STOPWORDS], EDGE_STOPWORDS),
        ([w for w in answer if w not in question], frozenset()),
        (answer, frozenset()),
    ):
        if words:
            return Counter(words), neutral
    return Counter(), frozenset()


def snap_to_span(
    answer: str,
    passages: Sequence[str],
    question: str | None = None,
    *,
    max_span_tokens: int = 30,
) -> Grounding | None:
    """The shortest span of one passage that carries ``answer``, or None when nothing overlaps.

    Over every window of at most ``max_span_tokens`` passage tokens that starts and ends
    on an answer content word, maximise token F1 of the window's words against the
    answer's content words (stopwords and question words in the window are neutral);
    ties go to the shorter span, then the earlier passage, then the earlier position.

    Args:
        answer: The generated answer.
        passages: The context passages.
        question: When given, answer words that also occur in it are not matched
            (unless that leaves nothing), since answers restate the question.
        max_span_tokens: The longest span, in normalised tokens.

    Returns:
        A :class:`Grounding` with offsets into ``passages[passage_index]``, or None for
        an empty answer or no shared word.

    >>> snap_to_span("It is in Paris!", ["Rome is in Italy.", "The tower is in Paris, France."])
    Grounding(passage_index=1, start=16, end=21, text='Paris', score=1.0)
    >>> snap_to_span("Berlin", ["Rome is in Italy."]) is None
    True
    """
    check_int("max_span_tokens", max_span_tokens, minimum=1)
    if not isinstance(answer, str):
        raise ConfigError(f"answer must be a string, got {type(answer).__name__}")
    if question is not None and not isinstance(question, str):
        raise ConfigError(f"question must be a string or None, got {type(question).__name__}")
    question_words = frozenset(t[0] for t in _tokenize(question)) if question else frozenset()
    wanted, neutral = _content([t[0] for t in _tokenize(answer)], question_words)
    if not wanted:
        return None
    answer_len = sum(wanted.values())
    # (F1, -span tokens, -passage, -start token) is maximised; ties go to the first found.
    best: tuple[float, int, int, int] | None = None
    best_start, best_end = 0, 0
    for p, passage in enumerate(passages):
        if not isinstance(passage, str):
            raise ConfigError(f"passages[{p}] must be a string, got {type(passage).__name__}")
        tokens = _tokenize(passage)
        words = [t[0] for t in tokens]
        # counted[k]: how many of the first k tokens count towards a window's length.
        counted = [0, *itertools.accumulate([w not in neutral for w in words])]
        hits = [k for k, w in enumerate(words) if w in wanted]
        for a_pos, a in enumerate(hits):
            have: Counter[str] = Counter()
            overlap = 0
            for b in hits[a_pos:]:
                if b - a >= max_span_tokens:
                    break
                word = words[b]
                if have[word] < wanted[word]:
                    overlap += 1
                have[word] += 1
                length = counted[b + 1] - counted[a]
                f1 = 2.0 * overlap / (length + answer_len)
                key = (f1, -(b - a + 1), -p, -a)
                if best is None or key > best:
                    best, best_start, best_end = key, tokens[a][1], tokens[b][2]
    if best is None:
        return None
    p = -best[2]
    return Grounding(p, best_start, best_end, passages[p][best_start:best_end], best[0])
