"""Hybrid retrieval, the pure parts: a safe full-text query from user text, and rank fusion.

Hybrid retrieval runs two searches per question in the same Redis round trip: the
vector KNN and a BM25 full-text search over the chunk ``text`` and ``title``
fields. This module builds the full-text query and fuses the two ranked lists;
:mod:`rag_core.enrichment` sends the commands.

User text never reaches the query parser as typed: :func:`query_terms` keeps only
word tokens (letters, digits, ``_``), lowercased, without stopwords, and every term
still goes through :func:`rag_core.filters.escape_query_term` (the project's one
escaping place) before :func:`text_query` joins them into a disjunction, so no
operator (``|``, ``-``, ``@field:``, ``=>``, ``$param``, ``*``, ``%``, ``~``, quotes,
parentheses) can be injected.

Example:
    >>> query_terms("Does IL-6 (interleukin 6) cause the fever?")
    ['does', 'il', '6', 'interleukin', 'cause', 'fever']
    >>> text_query(["il", "6"], TextSearchConfig())
    '@text|title:(il|6)'
    >>> fuse([("a", 0.9), ("b", 0.8), ("c", 0.1)], [("b", 7.0), ("d", 5.0)], FusionConfig(dense_weight=0.5))
    [('b', 0.9375), ('a', 0.5), ('c', 0.0), ('d', 0.0)]

Defaults (tuned on SciFact's train claims only, see ``benchmarks/retrieval_quality.py``):
BM25 with ``BM25STD`` over ``text|title`` (the schema's field weights: title 2.0), and a
convex combination of min-max-normalised scores, 0.55 dense / 0.45 BM25, over the top
100 chunks of each search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

from rag_core.errors import ConfigError
from rag_core.filters import escape_query_term
from rag_core.validation import check_int, check_number, check_positive_int

__all__ = [
    "STOPWORDS",
    "FusionConfig",
    "HybridConfig",
    "TextSearchConfig",
    "convex_fusion",
    "fuse",
    "fuse_hits",
    "query_terms",
    "reciprocal_rank_fusion",
    "text_query",
    "text_search_args",
]

# RediSearch's default stopword list (it does not index these, so they can never match).
STOPWORDS = frozenset(
    "a is the an and are as at be but by for if in into it no not of on or such that their then "
    "there these they this to was will with".split()
)
# A word: a run of Unicode letters, digits or "_". RediSearch's tokenizer splits on
# ASCII punctuation and whitespace, so these are the units it indexed.
_WORD = re.compile(r"[^\W]+", re.UNICODE)
MAX_TERMS = 64
TEXT_FIELDS = ("text", "title")  # the TEXT fields of a chunk index (rag_core.store.schema)

Ranked = Sequence[tuple[str, float]]


def query_terms(text: str, max_terms: int = MAX_TERMS, min_chars: int = 1) -> list[str]:
    """The word tokens of ``text`` for a full-text query, in order, without repeats.

    Lowercased; punctuation, stopwords and tokens shorter than ``min_chars`` are
    dropped; at most ``max_terms`` are kept.

    >>> query_terms("@title:{x} | -y => $vec *foo* 'bar' %baz%")
    ['title', 'x', 'y', 'vec', 'foo', 'bar', 'baz']
    >>> query_terms("The and of")
    []
    """
    if not isinstance(text, str):
        raise ConfigError(f"question text must be a string, got {type(text).__name__}")
    terms: list[str] = []
    seen: set[str] = set()
    for match in _WORD.finditer(text.lower()):
        term = match.group(0)
        if term in STOPWORDS or len(term) < min_chars or term in seen:
            continue
        seen.add(term)
        terms.append(term)
        if len(terms) >= max_terms:
            break
    return terms


@dataclass(frozen=True)
class TextSearchConfig:
    """The BM25 side of hybrid retrieval.

    Args:
        scorer: RediSearch scorer: ``BM25STD`` (standard Okapi BM25, RediSearch
            2.10+) or ``BM25`` (RediSearch's older variant: on SciFact it is far worse).
        fields: the TEXT fields searched, with the field weights of the index schema
            (``title`` 2.0, ``text`` 1.0).
        max_terms: at most this many query terms (long questions are cut).
        min_chars: drop query terms shorter than this.
    """

    scorer: Literal["BM25STD", "BM25"] = "BM25STD"
    fields: tuple[str, ...] = TEXT_FIELDS
    max_terms: int = MAX_TERMS
    min_chars: int = 1

    def __post_init__(self) -> None:
        if self.scorer not in ("BM25STD", "BM25"):
            raise ConfigError(f"scorer must be BM25STD or BM25, got {self.scorer!r}")
        if (not isinstance(self.fields, tuple) or not self.fields
                or any(f not in TEXT_FIELDS for f in self.fields) or len(set(self.fields)) != len(self.fields)):
            raise ConfigError(f"fields must be a non-empty tuple of {', '.join(TEXT_FIELDS)}, got {self.fields!r}")
        check_positive_int("max_terms", self.max_terms)
        check_positive_int("min_chars", self.min_chars)


def text_query(terms: Sequence[str], config: TextSearchConfig) -> str:
    """The ``FT.SEARCH`` query string (DIALECT 2) matching any of ``terms`` in ``config.fields``.

    Every term is escaped here, even though :func:`query_terms` only yields word tokens.

    >>> text_query(["a-b", "c"], TextSearchConfig(fields=("text",)))
    '@text:(a\\\\-b|c)'
    """
    if not terms:
        raise ConfigError("a full-text query needs at least one term")
    return f"@{'|'.join(config.fields)}:({'|'.join(escape_query_term(t) for t in terms)})"


# --------------------------------------------------------------------------- fusion


@dataclass(frozen=True)
class FusionConfig:
    """How the dense and the full-text ranking are combined.

    Args:
        method: ``rrf`` (reciprocal rank fusion: ``sum w / (rrf_k + rank)``) or
            ``convex`` (``sum w * min-max-normalised score``, Bruch et al. 2023).
        rrf_k: the RRF rank offset.
        dense_weight: weight of the dense list; the text list gets ``1 - dense_weight``.
    """

    method: Literal["rrf", "convex"] = "convex"
    rrf_k: int = 60
    dense_weight: float = 0.55

    def __post_init__(self) -> None:
        if self.method not in ("rrf", "convex"):
            raise ConfigError(f"fusion method must be rrf or convex, got {self.method!r}")
        check_int("rrf_k", self.rrf_k, minimum=0)
        check_number("dense_weight", self.dense_weight, minimum=0.0, maximum=1.0)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], weights: Sequence[float],
                           k: int = 60) -> dict[str, float]:
    """``id -> sum_i weights[i] / (k + rank_i(id))`` (ranks from 1; absent ids add nothing).

    >>> reciprocal_rank_fusion([["a", "b"], ["b"]], [1.0, 1.0], k=0)
    {'a': 1.0, 'b': 1.5}
    """
    if len(rankings) != len(weights):
        raise ConfigError("one weight per ranking")
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, item in enumerate(ranking, 1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def _min_max(scores: Mapping[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi <= lo:
        return {item: 1.0 for item in scores}
    return {item: (s - lo) / (hi - lo) for item, s in scores.items()}


def convex_fusion(scored: Sequence[Mapping[str, float]], weights: Sequence[float]) -> dict[str, float]:
    """``id -> sum_i weights[i] * minmax_i(score_i(id))``; an id absent from a list gets 0 there.

    >>> convex_fusion([{"a": 0.9, "b": 0.5}, {"b": 10.0, "c": 2.0}], [0.5, 0.5])
    {'a': 0.5, 'b': 0.5, 'c': 0.0}
    """
    if len(scored) != len(weights):
        raise ConfigError("one weight per list")
    fused: dict[str, float] = {}
    for scores, weight in zip(scored, weights):
        for item, s in _min_max(scores).items():
            fused[item] = fused.get(item, 0.0) + weight * s
    return fused


def fuse(dense: Ranked, text: Ranked, config: FusionConfig = FusionConfig()) -> list[tuple[str, float]]:
    """Fuse two ``[(id, score)]`` lists (each best first) into one, best first.

    Scores are rounded to 6 decimals; ties are broken by the dense rank, then the
    text rank, then the id, so the order is deterministic.
    """
    weights = (config.dense_weight, 1.0 - config.dense_weight)
    if config.method == "rrf":
        fused = reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in text]], weights, config.rrf_k)
    else:
        fused = convex_fusion([_best(dense), _best(text)], weights)
    dense_rank = _ranks(dense)
    text_rank = _ranks(text)
    missing = len(dense) + len(text) + 1
    order = sorted(fused, key=lambda i: (-round(fused[i], 6), dense_rank.get(i, missing),
                                         text_rank.get(i, missing), i))
    return [(i, round(fused[i], 6)) for i in order]


def _best(ranked: Ranked) -> dict[str, float]:
    out: dict[str, float] = {}
    for item, score in ranked:
        if item not in out:
            out[item] = float(score)
    return out


def _ranks(ranked: Ranked) -> dict[str, int]:
    out: dict[str, int] = {}
    for rank, (item, _) in enumerate(ranked, 1):
        out.setdefault(item, rank)
    return out


def fuse_hits(dense: Sequence[Mapping[str, Any]], text: Sequence[Mapping[str, Any]], config: FusionConfig,
              top_k: int) -> list[dict[str, Any]]:
    """Fuse two lists of search hits (dicts with ``chunk_id`` and ``score``, best first).

    Each fused hit keeps its fields (the dense copy when both lists hold it), with
    ``score`` = the fused score, ``dense_score`` = its cosine similarity and
    ``text_score`` = its BM25 score (None where a list did not retrieve it).

    >>> fused = fuse_hits([{"chunk_id": "a#0", "score": 0.8}], [{"chunk_id": "b#0", "score": 3.0}],
    ...                   FusionConfig(method="rrf", rrf_k=0, dense_weight=0.5), top_k=1)
    >>> fused
    [{'chunk_id': 'a#0', 'score': 0.5, 'dense_score': 0.8, 'text_score': None}]
    """
    dense_scores = {h["chunk_id"]: h["score"] for h in dense}
    text_scores = {h["chunk_id"]: h["score"] for h in text}
    by_id = {h["chunk_id"]: h for h in text}
    by_id.update({h["chunk_id"]: h for h in dense})
    fused = fuse(list(dense_scores.items()), list(text_scores.items()), config)
    return [dict(by_id[c], score=s, dense_score=dense_scores.get(c), text_score=text_scores.get(c))
            for c, s in fused[:top_k]]


def text_search_args(question: str, index: str, return_fields: Sequence[str], num_results: int,
                     config: TextSearchConfig, filter_query: str = "*") -> list[Any] | None:
    """``FT.SEARCH`` arguments (index name first) of the BM25 query for ``question``,
    or None when the question has no searchable word (only stopwords or punctuation).

    ``filter_query`` is a :func:`rag_core.filters.filter_string` (``*`` for none); the
    reply has scores (``WITHSCORES``) and ``return_fields``.

    >>> text_search_args("Is IL-6 up?", "kb__v1", ["doc_id"], 50, TextSearchConfig(fields=("text",)))
    ['kb__v1', '@text:(il|6|up)', 'SCORER', 'BM25STD', 'WITHSCORES', 'RETURN', 1, 'doc_id', 'LIMIT', 0, 50, 'DIALECT', 2]
    >>> text_search_args("the of", "kb__v1", ["doc_id"], 50, TextSearchConfig()) is None
    True
    """
    terms = query_terms(question, config.max_terms, config.min_chars)
    if not terms:
        return None
    query = text_query(terms, config)
    if filter_query and filter_query != "*":
        query = f"({query}) {filter_query}"
    return [index, query, "SCORER", config.scorer, "WITHSCORES", "RETURN", len(return_fields), *return_fields,
            "LIMIT", 0, num_results, "DIALECT", 2]


@dataclass(frozen=True)
class HybridConfig:
    """Hybrid retrieval settings (of ``rag_core.enrichment.HybridSearchParameters``).

    Args:
        text: the BM25 query.
        fusion: how the two rankings combine.
        candidates: each of the two searches fetches ``max(top_k, candidates)`` chunks
            before fusion.
    """

    text: TextSearchConfig = TextSearchConfig()
    fusion: FusionConfig = FusionConfig()
    candidates: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.text, TextSearchConfig) or not isinstance(self.fusion, FusionConfig):
            raise ConfigError("text must be a TextSearchConfig and fusion a FusionConfig")
        check_int("candidates", self.candidates, minimum=1, maximum=1000)
