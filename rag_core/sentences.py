"""Sentence-level context selection: split passages into sentences, keep the ones that answer.

A retrieved chunk is a few hundred tokens, and the sentence that answers the question
is often one of ten; a small generator given the whole chunk rambles. So the query
pipeline embeds sentences, and :func:`select_sentences` keeps the ones closest to the
question (plus the sentence after each, where answers tend to sit) within a token
budget, in reading order so the prompt still reads naturally.

:func:`split_sentences` is regex-based (no nltk/spacy models offline) and returns
character offsets, so every selected sentence can be checked against its passage.
A ``.`` ends a sentence only when whitespace and then a character that is not a
lower-case letter follow, and the word before it is not a known abbreviation
("Mr.", "e.g.", "approx.", "No." before a number), a dotted acronym ("U.S.") or an initial ("J."). The
trade-off: "vitamin D. It" and "the U.S. The" stay one sentence. CJK and other
full stops (``。！？``, ``।``, ``؟``) end a sentence with no space after them. A blank
line always ends one; a single newline does too unless the next line starts with a
lower-case letter (a hard-wrapped line). List markers ("- ", "1. ", "a) ") are not
part of a sentence's span.

Example:
    >>> [s.text for s in split_sentences('Mr. J. R. R. Tolkien wrote it, e.g. in 3.5 years. "Done." Next')]
    ['Mr. J. R. R. Tolkien wrote it, e.g. in 3.5 years.', '"Done."', 'Next']
    >>> s = split_sentences("- First item\\n- Second one")[1]
    >>> s, "- First item\\n- Second one"[s.start:s.end]
    (Span(start=15, end=25, text='Second one'), 'Second one')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from rag_core.errors import ConfigError
from rag_core.validation import check_int, check_number, is_number

__all__ = [
    "ABBREVIATIONS",
    "NUMBER_ABBREVIATIONS",
    "Selection",
    "Span",
    "select_sentences",
    "sentence_boundaries",
    "split_sentences",
]

# Words (lower case, without the final ".") after which a "." never ends a sentence ...
ABBREVIATIONS = frozenset(
    "mr mrs ms mx dr prof st sr jr mt ft rev hon gen col lt sgt capt gov sen rep "
    "vs cf approx ca al eds dept".split()
)
# ... and ones that are abbreviations only before a number ("No. 5", "Jan. 5"; but "No. It is").
NUMBER_ABBREVIATIONS = frozenset(
    "no nos fig figs eq eqs vol vols pp ch sec art jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# Full stops that need whitespace after them (Latin, Cyrillic, Greek, ...) and ones that do not.
_SPACED = ".!?…"
_UNSPACED = "。！？．｡।॥؟۔"
_CLOSERS = "\"'”’»)]}」』】）›"
_OPENERS = "\"'“‘«([{「『【（‹"
_BOUNDARY = re.compile(
    rf"(?P<term>(?:[{re.escape(_SPACED)}]+|[{re.escape(_UNSPACED)}]+)[{re.escape(_CLOSERS)}]*)|(?P<nl>\n)"
)
_NEXT = re.compile(r"\s*")
# A list marker at the start of a line: a bullet, "1." / "1)" / "(1)", or "a)" / "(a)".
_BULLET = re.compile(r"^[ \t]*(?:[-*+•·‣▪◦●○■□–—]|\(?\d{1,3}[.)]|\(?[A-Za-z]\))[ \t]+", re.MULTILINE)
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")


@dataclass(frozen=True)
class Span:
    """One sentence: ``text == source[start:end]`` (whitespace and list marker trimmed)."""

    start: int
    """Offset of the sentence's first character in the source text."""
    end: int
    """Offset just past its last character."""
    text: str
    """The sentence itself, a verbatim slice of the source."""


def _word_before(text: str, index: int) -> str:
    """The whitespace-delimited word ending at ``index``, opening quotes/brackets stripped."""
    start = index
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:index].lstrip(_OPENERS)


def _ends_at_period(text: str, index: int, next_char: str) -> bool:
    """Whether the single ``.`` at ``index`` may end a sentence (not an abbreviation or initial)."""
    word = _word_before(text, index)
    lower = word.lower()
    if lower in ABBREVIATIONS or _DOTTED.fullmatch(word) or (lower in NUMBER_ABBREVIATIONS and next_char.isdigit()):
        return False
    return not (len(word) == 1 and word.isupper())


def sentence_boundaries(text: str, *, final: bool = True, hard_newlines: bool = False) -> Iterator[int]:
    """Positions where a sentence ends (just after its full stop and closing quotes), in order.

    Args:
        text: Any text.
        final: The text is complete: a full stop at the very end ends a sentence. When
            False (text still being generated) a ``.`` needs the next character to be seen,
            since "3." may become "3.5".
        hard_newlines: Every newline after text ends a sentence (generated answers);
            otherwise a single newline before a lower-case letter is a wrapped line.

    >>> list(sentence_boundaries("It is 3. Or 3.5"))
    [8]
    >>> list(sentence_boundaries("It is 3.", final=False)), list(sentence_boundaries("It is 3."))
    ([], [8])
    """
    n = len(text)
    bullets = _bullets(text)
    line_start = 0
    for m in _BOUNDARY.finditer(text):
        if m.group("nl") is not None:
            line_start = m.end()
            if hard_newlines:
                yield m.start()
                continue
            k = _skip_space(text, m.end())
            if k == n or "\n" in text[m.end():k] or _line_start(text, k) in bullets or not text[k].islower():
                yield m.start()
            continue
        stop = m.group("term").rstrip(_CLOSERS)
        if stop[0] in _UNSPACED:
            yield m.end()
            continue
        # A list marker's own "." ("1. First") is not a full stop.
        if line_start in bullets and m.end() <= bullets[line_start]:
            continue
        if m.end() < n and not text[m.end()].isspace():
            continue  # "3.5", "e.g.,", "example.com"
        k = _skip_space(text, m.end())
        if stop == "." and not _ends_at_period(text, m.start(), text[k:k + 1]):
            continue
        if k == n:
            if final:
                yield m.end()
            continue
        if not text[k].islower():
            yield m.end()


def split_sentences(text: str) -> list[Span]:
    """The sentences of ``text`` as spans with character offsets into it.

    Text without a final full stop still yields its last sentence; empty or
    whitespace-only text yields ``[]``.

    >>> split_sentences("Paris is in France.\\n\\nIt has 2.1 million people")
    [Span(start=0, end=19, text='Paris is in France.'), Span(start=21, end=46, text='It has 2.1 million people')]
    """
    if not isinstance(text, str):
        raise ConfigError(f"text must be a string, got {type(text).__name__}")
    bullets = _bullets(text)
    spans: list[Span] = []
    start = 0
    for end in [*sentence_boundaries(text), len(text)]:
        if end <= start:
            continue
        a = _skip_space(text, start)
        ls = _line_start(text, a)  # a list marker (with its indentation) is keyed by its line start
        if ls in bullets and ls <= a < bullets[ls]:
            a = bullets[ls]
        b = end
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            spans.append(Span(a, b, text[a:b]))
        start = end
    return spans


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _skip_space(text: str, index: int) -> int:
    m = _NEXT.match(text, index)  # "\s*" always matches
    return m.end() if m else index


def _bullets(text: str) -> dict[int, int]:
    """Line start -> end of that line's list marker, for lines that start with one."""
    return {m.start(): m.end() for m in _BULLET.finditer(text)}


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """The sentences kept from one passage, in document order."""

    passage_index: int
    sentence_indices: tuple[int, ...]
    spans: tuple[Span, ...]
    score: float  # the best combined score among the kept sentences
    tokens: int  # sum of their token counts

    @property
    def text(self) -> str:
        """The sentences joined by a space, with " … " where sentences were skipped."""
        parts: list[str] = []
        for k, (index, span) in enumerate(zip(self.sentence_indices, self.spans)):
            if k:
                parts.append(" " if index == self.sentence_indices[k - 1] + 1 else " … ")
            parts.append(span.text)
        return "".join(parts)


def _is_nested(values: Any) -> bool:
    if isinstance(values, np.ndarray):
        return values.ndim != 2
    return len(values) > 0 and not (isinstance(values[0], np.ndarray) and values[0].ndim == 1) and not (
        isinstance(values[0], Sequence) and len(values[0]) > 0 and is_number(values[0][0]))


def _flat_vectors(sentence_vecs: Any, sizes: list[int]) -> np.ndarray:
    total = sum(sizes)
    if _is_nested(sentence_vecs):
        if len(sentence_vecs) != len(sizes):
            raise ConfigError(f"sentence_vecs has {len(sentence_vecs)} entries for {len(sizes)} passages")
        blocks = [np.asarray(v, dtype=np.float64).reshape(size, -1) if size else None
                  for v, size in zip(sentence_vecs, sizes)]
        present = [b for b in blocks if b is not None]
        vecs = np.concatenate(present) if present else np.zeros((0, 0))
    else:
        vecs = np.asarray(sentence_vecs, dtype=np.float64)
    if vecs.ndim != 2 or vecs.shape[0] != total:
        raise ConfigError(f"sentence_vecs must have one row per sentence ({total}), got shape {vecs.shape}")
    return vecs


def _flat_counts(token_counts: Any, sizes: list[int]) -> list[int]:
    counts = list(token_counts)
    if counts and not is_number(counts[0]):
        if len(counts) != len(sizes):
            raise ConfigError(f"token_counts has {len(counts)} entries for {len(sizes)} passages")
        counts = [c for block in counts for c in block]
    if len(counts) != sum(sizes):
        raise ConfigError(f"token_counts must have one count per sentence ({sum(sizes)}), got {len(counts)}")
    for c in counts:
        check_int("each token count", c, minimum=0)
    return counts


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _passage_priors(num_passages: int, passage_scores: Sequence[float] | None) -> np.ndarray:
    """Each passage's retrieval prior in [0, 1]: min-max scaled scores, else by rank."""
    if passage_scores is None:
        if num_passages == 1:
            return np.ones(1)
        return 1.0 - np.arange(num_passages) / (num_passages - 1)
    scores = list(passage_scores)
    if len(scores) != num_passages:
        raise ConfigError(f"passage_scores has {len(scores)} entries for {num_passages} passages")
    for s in scores:
        check_number("each passage score", s)
    lo, hi = min(scores), max(scores)
    if hi - lo <= 0:
        return np.ones(num_passages)
    return (np.asarray(scores, dtype=np.float64) - lo) / (hi - lo)


def select_sentences(
    question_vec: Any,
    passages: Sequence[Sequence[Span]],
    sentence_vecs: Any,
    token_counts: Any,
    budget_tokens: int,
    *,
    neighbours: int = 1,
    min_per_passage: int = 0,
    passage_scores: Sequence[float] | None = None,
    passage_weight: float = 0.2,
) -> list[Selection]:
    """The sentences most similar to the question that fit ``budget_tokens``, in reading order.

    Each sentence scores ``(1 - passage_weight) * cosine + passage_weight * prior``, where
    the prior is its passage's min-max scaled ``passage_scores`` (higher is better) or,
    without scores, its retrieval rank (first passage 1, last 0). Sentences are picked
    best first (ties: earlier passage, then earlier sentence); picking one also adds up
    to ``neighbours`` sentences on each side of it in its passage (the next one first:
    answers often follow the sentence that matches the question), each only if it fits.
    ``min_per_passage`` first picks the best few sentences of every passage, if they fit.

    The budget (a sum of ``token_counts``) is never exceeded, except that the single best
    sentence is always kept even when it alone is over budget: the caller truncates it.

    Args:
        question_vec: The question embedding (1-D); need not be normalised.
        passages: Each passage's sentence spans (from :func:`split_sentences`).
        sentence_vecs: One row per sentence, passages concatenated in order (a 2-D
            array), or one 2-D array per passage.
        token_counts: One count per sentence, flat or one sequence per passage.
        budget_tokens: The most tokens to keep.
        neighbours: Sentences to add on each side of a picked one.
        min_per_passage: Sentences to pick from every passage first.
        passage_scores: Retrieval scores, one per passage; None ranks by order.
        passage_weight: How much the passage prior counts, in [0, 1].

    Returns:
        One :class:`Selection` per passage with a kept sentence, the best passage first,
        sentences in document order.

    Example:
        >>> spans = [split_sentences("Paris is big. It is the capital."), split_sentences("Rome is old.")]
        >>> vecs = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> picked = select_sentences(np.array([1.0, 0.0]), spans, vecs, [3, 4, 3], 7, passage_weight=0)
        >>> [(s.passage_index, s.text) for s in picked]
        [(0, 'Paris is big. It is the capital.')]
    """
    check_int("budget_tokens", budget_tokens, minimum=0)
    check_int("neighbours", neighbours, minimum=0)
    check_int("min_per_passage", min_per_passage, minimum=0)
    check_number("passage_weight", passage_weight, minimum=0.0, maximum=1.0)
    sizes = [len(p) for p in passages]
    total = sum(sizes)
    if total == 0:
        return []
    vecs = _flat_vectors(sentence_vecs, sizes)
    counts = _flat_counts(token_counts, sizes)
    question = np.asarray(question_vec, dtype=np.float64).reshape(-1)
    if question.shape[0] != vecs.shape[1]:
        raise ConfigError(f"question_vec has {question.shape[0]} dimensions, sentence_vecs {vecs.shape[1]}")
    if not np.all(np.isfinite(vecs)) or not np.all(np.isfinite(question)):
        raise ConfigError("question_vec and sentence_vecs must be finite")
    sims = _unit_rows(vecs) @ _unit_rows(question[None, :])[0]
    owner = np.repeat(np.arange(len(sizes)), sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    priors = _passage_priors(len(sizes), passage_scores)
    scores = (1.0 - passage_weight) * sims + passage_weight * priors[owner]
    # Round away float noise so equal scores tie exactly, then break ties by position.
    rounded = [round(float(s), 12) for s in scores]
    order = sorted(range(total), key=lambda i: (-rounded[i], i))

    chosen: set[int] = set()
    used = 0

    def take(i: int, force: bool = False) -> bool:
        nonlocal used
        if i in chosen:
            return True
        if force or used + counts[i] <= budget_tokens:
            chosen.add(i)
            used += counts[i]
            return True
        return False

    def pick(i: int, force: bool = False) -> None:
        if not take(i, force):
            return
        p = int(owner[i])
        first, last = offsets[p], offsets[p] + sizes[p] - 1
        for d in range(1, neighbours + 1):
            for j in (i + d, i - d):
                if first <= j <= last:
                    take(j)

    pick(order[0], force=True)
    if min_per_passage:
        ranked: dict[int, list[int]] = {}  # passage -> its sentences best first; passages best first
        for i in order:
            ranked.setdefault(int(owner[i]), []).append(i)
        for members in ranked.values():
            for i in members[:min_per_passage]:
                pick(i)
    for i in order:
        pick(i)

    by_passage: dict[int, list[int]] = {}
    for i in sorted(chosen):
        by_passage.setdefault(int(owner[i]), []).append(i)
    selections = [
        Selection(
            passage_index=p,
            sentence_indices=tuple(i - offsets[p] for i in members),
            spans=tuple(passages[p][i - offsets[p]] for i in members),
            score=max(float(scores[i]) for i in members),
            tokens=sum(counts[i] for i in members),
        )
        for p, members in by_passage.items()
    ]
    best_rank = {i: r for r, i in enumerate(order)}
    selections.sort(key=lambda s: min(best_rank[offsets[s.passage_index] + k] for k in s.sentence_indices))
    return selections
