"""ContextSelector: which sentences of the retrieved passages the generator reads (pure)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rag_core.context import ContextConfig, ContextSelector
from rag_core.errors import ConfigError
from rag_core.prompt import Passage

VOCAB = ["tower", "paris", "built", "1889", "iron", "mars", "red", "planet", "bridge", "river"]


class BagOfWords:
    """A deterministic stand-in embedding: word counts over a tiny vocabulary; counts calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            words = re.findall(r"\w+", text.lower())
            rows.append([words.count(v) for v in VOCAB] + [0.1])
        return np.asarray(rows, dtype=np.float32)


def words(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


PASSAGES = [
    Passage("t#0", "t", "Tower", "The tower stands in Paris. It was built in 1889 from iron. Visitors climb it.", 0.8),
    Passage("m#0", "m", "Mars", "Mars is the red planet. It has two moons.", 0.5),
    Passage("b#0", "b", "Bridge", "The bridge crosses the river.", 0.4),
]


def test_keeps_the_matching_sentences_within_budget_with_verifiable_offsets() -> None:
    selector = ContextSelector(ContextConfig(max_tokens=8, passage_weight=0.0), BagOfWords(), words)
    picked = selector.select("In what year was it built of iron?", PASSAGES)
    assert picked.used[0] == 0 and picked.passages[0].chunk_id == "t#0"
    assert "built in 1889" in picked.passages[0].text
    assert sum(len(p.text.split()) for p in picked.passages) <= 8
    for sentence in picked.sentences:
        source = PASSAGES[picked.used[sentence.source]]
        assert source.text[sentence.start:sentence.end] == sentence.text
    assert 0.0 < picked.best_similarity <= 1.0


def test_sentence_vectors_are_cached_per_passage_text() -> None:
    embed = BagOfWords()
    selector = ContextSelector(ContextConfig(max_tokens=20), embed, words)
    selector.select("Is Mars red?", PASSAGES)
    first = sum(len(c) for c in embed.calls)
    selector.select("How many moons has Mars?", PASSAGES)
    assert sum(len(c) for c in embed.calls) == first + 1  # only the new question


def test_cache_is_bounded() -> None:
    selector = ContextSelector(ContextConfig(max_tokens=20, cache_size=1), BagOfWords(), words)
    selector.select("Is Mars red?", PASSAGES)
    assert len(selector._cache) == 1  # noqa: SLF001 - the bound is the behaviour under test


def test_no_passages_selects_nothing() -> None:
    picked = ContextSelector(ContextConfig(), BagOfWords(), words).select("Why?", [])
    assert (picked.used, picked.passages, picked.sentences) == ((), (), ())


@pytest.mark.parametrize("kwargs", [{"max_tokens": -1}, {"neighbours": True}, {"passage_weight": 2.0}])
def test_invalid_config(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        ContextConfig(**kwargs)


def test_zero_budget_means_whole_passages() -> None:
    assert not ContextConfig(max_tokens=0).selects and ContextConfig().selects
