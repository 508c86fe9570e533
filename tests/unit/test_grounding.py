"""rag_core.grounding: SQuAD-normalised tokens with offsets, and snapping an answer to a span (pure)."""

from __future__ import annotations

import random

import pytest

from rag_core.errors import ConfigError
from rag_core.grounding import EDGE_STOPWORDS, Grounding, Token, normalize_tokens, snap_to_span


def snapped(answer: str, passages: list[str], question: str | None = None, **kwargs: int) -> Grounding:
    g = snap_to_span(answer, passages, question, **kwargs)
    assert g is not None
    assert passages[g.passage_index][g.start:g.end] == g.text  # offsets verify
    assert 0.0 < g.score <= 1.0
    return g


class TestNormalizeTokens:
    @pytest.mark.parametrize(
        "text, words",
        [
            ("The Eiffel Tower", ["eiffel", "tower"]),
            ("a cat and an owl", ["cat", "and", "owl"]),
            ("Hello,   WORLD!!", ["hello", "world"]),
            ("don't stop", ["dont", "stop"]),  # SQuAD removes punctuation inside a word
            ("3.5 m", ["35", "m"]),
            ("wrought-iron", ["wroughtiron"]),
            ("“Curly” ‘quotes’ — dash…", ["curly", "quotes", "dash"]),
            ("(the) [an] {a}", []),
            ("... !!! ---", []),
            ("", []),
            ("Café Ÿes ÉCOLE", ["café", "ÿes", "école"]),
            ("東京タワー", ["東", "京", "タ", "ワ", "ー"]),
            ("is东京。", ["is", "东", "京"]),
            ("Привет, мир!", ["привет", "мир"]),
        ],
    )
    def test_words(self, text: str, words: list[str]) -> None:
        assert [t.text for t in normalize_tokens(text)] == words

    def test_offsets_span_the_word_without_edge_punctuation(self) -> None:
        text = 'He said: "(Paris)," in 1889.'
        tokens = normalize_tokens(text)
        assert tokens == [Token("he", 0, 2), Token("said", 3, 7), Token("paris", 11, 16),
                          Token("in", 20, 22), Token("1889", 23, 27)]
        for t in tokens:
            assert text[t.start:t.end].lower() == t.text

    def test_not_a_string(self) -> None:
        with pytest.raises(ConfigError, match="must be a string"):
            normalize_tokens(b"bytes")  # type: ignore[arg-type]


class TestSnapToSpan:
    def test_exact_substring(self) -> None:
        passage = "The Eiffel Tower was completed in 1889 for the World's Fair."
        g = snapped("completed in 1889", [passage])
        assert (g.passage_index, g.text, g.score) == (0, "completed in 1889", 1.0)

    def test_question_words_restated_in_the_answer_are_not_matched(self) -> None:
        passage = ("The Normans were the people who in the 10th and 11th centuries gave their name to "
                   "Normandy, a region in France.")
        answer = "The Normans were in Normandy in the 10th and 11th centuries."
        question = "When were the Normans in Normandy?"
        g = snapped(answer, [passage], question)
        assert (g.text, g.score) == ("10th and 11th centuries", 1.0)
        # without the question, the span has to cover the restated words too
        assert len(snapped(answer, [passage]).text) > len(g.text)

    def test_only_question_words_left_uses_them_all(self) -> None:
        g = snapped("Normandy", ["Rollo ruled Normandy."], "Where did Rollo rule, Normandy?")
        assert (g.text, g.score) == ("Normandy", 1.0)

    def test_stopwords_never_at_the_edges(self) -> None:
        passage = "It was built in Paris in 1889 by the company of Eiffel."
        g = snapped("in Paris in 1889 by", [passage])
        assert g.text == "Paris in 1889"
        assert g.text.split()[0].lower() not in EDGE_STOPWORDS
        assert g.text.split()[-1].lower() not in EDGE_STOPWORDS

    def test_all_stopword_answer_still_matches(self) -> None:
        g = snapped("it is", ["Yes, it is."])
        assert g.text == "it is" and g.score == 1.0

    def test_picks_the_best_of_two_passages(self) -> None:
        passages = ["Marie Curie won a Nobel Prize in physics.",
                    "In 1911 Marie Curie won a second Nobel Prize, in chemistry."]
        g = snapped("She won the Nobel Prize in chemistry in 1911", passages, "Which prize did Curie win in 1911?")
        assert g.passage_index == 1 and "chemistry" in g.text

    def test_answer_spread_over_two_passages_takes_the_better_part(self) -> None:
        passages = ["The tower is made of wrought iron.", "It stands on the Champ de Mars in Paris."]
        g = snapped("wrought iron tower on the Champ de Mars", passages)
        assert (g.passage_index, g.text) == (1, "Champ de Mars")
        assert g.score < 1.0

    def test_punctuation_and_case_differences(self) -> None:
        passage = "Its height is 330 m (1,083 ft), about the same as an 81-storey building."
        g = snapped("1083 FT", [passage])
        assert g.text == "1,083 ft" and g.score == 1.0
        g = snapped("an 81 storey building", [passage])  # "81-storey" is one SQuAD token
        assert g.text == "building" and g.score < 1.0

    def test_no_overlap_or_empty_answer_is_none(self) -> None:
        assert snap_to_span("Berlin", ["Rome is in Italy."]) is None
        assert snap_to_span("", ["Rome is in Italy."]) is None
        assert snap_to_span("  ...  ", ["Rome is in Italy."]) is None
        assert snap_to_span("the", ["the the"]) is None  # articles are not words
        assert snap_to_span("Rome", []) is None
        assert snap_to_span("Rome", ["", "   "]) is None

    def test_shortest_span_wins_a_tie(self) -> None:
        passage = "alpha beta gamma. beta alpha."
        g = snapped("alpha beta", [passage])
        assert g.text == "alpha beta" and g.start == 0  # not "beta gamma. beta alpha", same F1, longer
        assert snapped("beta alpha", [passage]).start == 0  # equal score and length: the earlier one

    def test_ties_break_by_earlier_passage_then_position(self) -> None:
        passages = ["x Paris y Paris", "Paris"]
        g = snapped("Paris", passages)
        assert (g.passage_index, g.start) == (0, 2)
        assert snapped("Paris", list(reversed(passages))).passage_index == 0

    def test_prefers_precision_over_a_long_window(self) -> None:
        passage = "Paris " + "filler " * 10 + "France"
        g = snapped("Paris France", [passage])
        assert g.text == "Paris" and g.score == pytest.approx(2 / 3)
        assert snapped("Paris France", ["Paris and France"]).text == "Paris and France"

    def test_max_span_tokens_bounds_the_window(self) -> None:
        passage = "one two three four five"
        assert snapped("one two three four five", [passage], max_span_tokens=2).text == "one two"
        with pytest.raises(ConfigError, match="max_span_tokens"):
            snap_to_span("x", [passage], max_span_tokens=0)

    def test_repeated_answer_words_are_clipped(self) -> None:
        g = snapped("yes yes", ["yes no yes yes"])
        assert (g.text, g.score) == ("yes yes", 1.0)
        assert g.start == 7

    def test_unicode_text(self) -> None:
        passage = "L’école «Sainte‑Marie» est à Genève, près du lac Léman."
        g = snapped("Genève", [passage], "Où est l'école ?")
        assert g.text == "Genève"
        cjk = "东京塔位于日本东京。"
        g = snapped("日本东京", [cjk])
        assert g.text == "日本东京" and g.score == 1.0

    def test_bad_arguments(self) -> None:
        with pytest.raises(ConfigError, match="answer must be a string"):
            snap_to_span(None, ["x"])  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=r"passages\[1\] must be a string"):
            snap_to_span("x", ["x", 3])  # type: ignore[list-item]
        with pytest.raises(ConfigError, match="question must be a string"):
            snap_to_span("x", ["x"], 5)  # type: ignore[arg-type]

    def test_large_context_completes(self) -> None:
        """Complexity guard: 5 passages x 2,000 words of a tiny vocabulary (many hits), no timing."""
        rng = random.Random(0)
        vocab = [f"w{i}" for i in range(20)] + ["in", "of", "the", "was"]
        passages = [" ".join(rng.choice(vocab) for _ in range(2000)) for _ in range(5)]
        g = snapped(" ".join(vocab), passages)
        assert g.end - g.start < 400  # bounded by max_span_tokens
