"""rag_core.sentences: regex sentence splitting with offsets, and budgeted sentence selection (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from rag_core.errors import ConfigError
from rag_core.sentences import Selection, Span, select_sentences, sentence_boundaries, split_sentences


def texts(text: str) -> list[str]:
    spans = split_sentences(text)
    for span in spans:  # every span is a verifiable slice of its source
        assert text[span.start:span.end] == span.text
        assert span.text == span.text.strip()
    return [span.text for span in spans]


class TestSplitSentences:
    @pytest.mark.parametrize(
        "text, expected",
        [
            ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
            ("no final period", ["no final period"]),
            ("Ends with a period.", ["Ends with a period."]),
            # abbreviations, titles, initials, dotted acronyms
            ("Use a tool, e.g. a hammer. Or not.", ["Use a tool, e.g. a hammer.", "Or not."]),
            ("That is, i.e. The point. Next.", ["That is, i.e. The point.", "Next."]),
            ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
            ("J. R. R. Tolkien wrote it. He was British.", ["J. R. R. Tolkien wrote it.", "He was British."]),
            ("He moved to the U.S. in 1990. Then he left.", ["He moved to the U.S. in 1990.", "Then he left."]),
            ("The U.S.A. Army is big.", ["The U.S.A. Army is big."]),
            ("Smith et al. (2019) found it. Others agree.", ["Smith et al. (2019) found it.", "Others agree."]),
            ("See Fig. 3 and No. 5. Done.", ["See Fig. 3 and No. 5.", "Done."]),
            ("Approx. 5 people came.", ["Approx. 5 people came."]),
            ("Born Jan. 5, 1990. Died.", ["Born Jan. 5, 1990.", "Died."]),
            ("The answer is no. It is not.", ["The answer is no.", "It is not."]),
            ("No. The tower is taller.", ["No.", "The tower is taller."]),
            ("Born in Jan. He died in Dec. 1990.", ["Born in Jan.", "He died in Dec. 1990."]),
            # numbers and things that are not ends
            ("It costs 3.5 dollars. Cheap.", ["It costs 3.5 dollars.", "Cheap."]),
            ("Pi is 3.14159 and e is 2.718.", ["Pi is 3.14159 and e is 2.718."]),
            ("Visit example.com today. Bye.", ["Visit example.com today.", "Bye."]),
            ("Version 2.0 is out.Next is 3.0", ["Version 2.0 is out.Next is 3.0"]),
            ("It rose in 2020. Then fell.", ["It rose in 2020.", "Then fell."]),
            ("Lower case after a stop. it continues here.", ["Lower case after a stop. it continues here."]),
            # quotes and brackets after the full stop stay with their sentence
            ('She said "Stop." Then she left.', ['She said "Stop."', "Then she left."]),
            ("(See above.) Next one.", ["(See above.)", "Next one."]),
            ("He said “yes.” She agreed.", ["He said “yes.”", "She agreed."]),
            ("Really?! Yes... Fine.", ["Really?!", "Yes...", "Fine."]),
            ("Wait… Then go.", ["Wait…", "Then go."]),
            # newlines and list markers
            ("Title\nThe body starts here.", ["Title", "The body starts here."]),
            ("A line that is\nwrapped mid sentence. Next.", ["A line that is\nwrapped mid sentence.", "Next."]),
            ("para one\n\npara two", ["para one", "para two"]),
            ("- first item\n- second item", ["first item", "second item"]),
            ("1. First step\n2. Second step.", ["First step", "Second step."]),
            ("  * indented bullet\n  • another one", ["indented bullet", "another one"]),
            ("a) alpha\n(b) beta", ["alpha", "beta"]),
            ("Intro:\n- one\n- two", ["Intro:", "one", "two"]),
            ("Line one\r\nLine two", ["Line one", "Line two"]),
            # other scripts
            ("东京是日本的首都。它很大！人口多吗？是的", ["东京是日本的首都。", "它很大！", "人口多吗？", "是的"]),
            ("「はい。」と言った。", ["「はい。」", "と言った。"]),
            ("Привет. Как дела? Хорошо", ["Привет.", "Как дела?", "Хорошо"]),
            ("मैं ठीक हूँ। तुम कैसे हो?", ["मैं ठीक हूँ।", "तुम कैसे हो?"]),
            ("هل أنت بخير؟ نعم", ["هل أنت بخير؟", "نعم"]),
            ("Emoji 😀 here. 🎉 Party!", ["Emoji 😀 here.", "🎉 Party!"]),
            # degenerate input
            ("", []),
            ("   \n\n\t ", []),
            (".", ["."]),
            ("...", ["..."]),
            ("- ", []),  # an empty list item
            ("-", ["-"]),
        ],
    )
    def test_table(self, text: str, expected: list[str]) -> None:
        assert texts(text) == expected

    def test_offsets_point_into_the_source(self) -> None:
        text = "  Paris is in France.  \n\n- It has 2.1 million people \n"
        spans = split_sentences(text)
        assert spans == [Span(2, 21, "Paris is in France."), Span(27, 52, "It has 2.1 million people")]

    def test_not_a_string(self) -> None:
        with pytest.raises(ConfigError, match="must be a string"):
            split_sentences(None)  # type: ignore[arg-type]

    def test_long_text_is_linear_enough(self) -> None:
        text = "Word " * 20_000 + "end. " + "x" * 50_000 + ". Last."
        assert texts(text)[-1] == "Last."


class TestSentenceBoundaries:
    @pytest.mark.parametrize(
        "text, final, expected",
        [
            ("It is 3.", True, [8]),
            ("It is 3.", False, []),  # may become "3.5"
            ("It is 3. Or", False, [8]),
            ("It is big!", False, []),
            ("终わり。", False, [4]),  # an unspaced full stop needs no lookahead
            ("One. two", True, []),
        ],
    )
    def test_final(self, text: str, final: bool, expected: list[int]) -> None:
        assert list(sentence_boundaries(text, final=final)) == expected

    def test_hard_newlines(self) -> None:
        assert list(sentence_boundaries("wrapped\nline")) == []
        assert list(sentence_boundaries("wrapped\nline", hard_newlines=True)) == [7]


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v / np.linalg.norm(v)


def passages_of(*counts: int) -> list[list[Span]]:
    """Passages with the given numbers of dummy sentences (spans are only carried through)."""
    out = []
    for p, n in enumerate(counts):
        out.append([Span(10 * i, 10 * i + 5, f"p{p}s{i}") for i in range(n)])
    return out


class TestSelectSentences:
    Q = unit(1.0, 0.0)

    def test_empty_inputs(self) -> None:
        assert select_sentences(self.Q, [], np.zeros((0, 2)), [], 10) == []
        assert select_sentences(self.Q, [[], []], np.zeros((0, 2)), [], 10) == []

    def test_one_passage_picks_the_best_and_keeps_document_order(self) -> None:
        passages = passages_of(4)
        vecs = np.stack([unit(0, 1), unit(1, 0.2), unit(0.2, 1), unit(1, 0.1)])
        picked = select_sentences(self.Q, passages, vecs, [5, 5, 5, 5], 10, neighbours=0)
        assert len(picked) == 1
        sel = picked[0]
        assert sel.passage_index == 0 and sel.sentence_indices == (1, 3)  # document order, not score order
        assert [s.text for s in sel.spans] == ["p0s1", "p0s3"]
        assert sel.tokens == 10 and sel.text == "p0s1 … p0s3"
        # one passage: its prior is 1, blended with the default passage_weight of 0.2
        assert sel.score == pytest.approx(0.8 * float(vecs[3] @ self.Q) + 0.2)

    def test_respects_the_budget(self) -> None:
        passages = passages_of(5)
        vecs = np.stack([unit(1, i / 10) for i in range(5)])  # best first
        counts = [4, 4, 4, 4, 4]
        for budget in range(4, 21):
            picked = select_sentences(self.Q, passages, vecs, counts, budget, neighbours=0)
            used = sum(s.tokens for s in picked)
            assert used <= budget and used == 4 * (budget // 4)
            assert picked[0].sentence_indices == tuple(range(budget // 4))

    def test_skips_a_long_sentence_for_shorter_ones_that_fit(self) -> None:
        passages = passages_of(3)
        vecs = np.stack([unit(1, 0), unit(1, 0.1), unit(1, 0.2)])
        picked = select_sentences(self.Q, passages, vecs, [3, 10, 3], 6, neighbours=0)
        assert picked[0].sentence_indices == (0, 2)

    def test_the_best_sentence_is_kept_even_over_budget(self) -> None:
        passages = passages_of(2)
        vecs = np.stack([unit(1, 0), unit(1, 1)])
        picked = select_sentences(self.Q, passages, vecs, [50, 1], 10, neighbours=1)
        assert [(s.passage_index, s.sentence_indices, s.tokens) for s in picked] == [(0, (0,), 50)]
        assert select_sentences(self.Q, passages, vecs, [5, 1], 0)[0].sentence_indices == (0,)

    def test_neighbours_come_with_a_pick_next_one_first(self) -> None:
        passages = passages_of(5)
        vecs = np.stack([unit(0, 1), unit(0, 1), unit(1, 0), unit(0, 1), unit(0, 1)])
        one_side = select_sentences(self.Q, passages, vecs, [2] * 5, 4, neighbours=1)
        assert one_side[0].sentence_indices == (2, 3)  # only room for one neighbour: the next sentence
        both = select_sentences(self.Q, passages, vecs, [2] * 5, 6, neighbours=1)
        assert both[0].sentence_indices == (1, 2, 3)
        wide = select_sentences(self.Q, passages, vecs, [2] * 5, 100, neighbours=2)
        assert wide[0].sentence_indices == (0, 1, 2, 3, 4)
        none = select_sentences(self.Q, passages, vecs, [2] * 5, 100, neighbours=0, passage_weight=0)
        assert none[0].sentence_indices == (0, 1, 2, 3, 4)  # the budget allows all of them anyway

    def test_neighbours_stay_inside_their_passage(self) -> None:
        passages = passages_of(2, 2)
        vecs = np.stack([unit(0, 1), unit(1, 0), unit(0, 1), unit(0, 1)])
        picked = select_sentences(self.Q, passages, vecs, [1] * 4, 2, neighbours=1, passage_weight=0)
        assert [(s.passage_index, s.sentence_indices) for s in picked] == [(0, (0, 1))]

    def test_passages_ordered_by_best_score_sentences_in_document_order(self) -> None:
        passages = passages_of(3, 2)
        vecs = np.stack([unit(0.1, 1), unit(0.5, 1), unit(0, 1), unit(0.2, 1), unit(1, 0)])
        picked = select_sentences(self.Q, passages, vecs, [1] * 5, 3, neighbours=0, passage_weight=0)
        assert [(s.passage_index, s.sentence_indices) for s in picked] == [(1, (0, 1)), (0, (1,))]
        assert isinstance(picked[0], Selection) and picked[0].score > picked[1].score

    def test_ties_break_by_passage_then_sentence(self) -> None:
        passages = passages_of(2, 2)
        vecs = np.stack([unit(1, 1)] * 4)
        for _ in range(3):  # deterministic
            picked = select_sentences(self.Q, passages, vecs, [1] * 4, 3, neighbours=0, passage_weight=0)
            assert [(s.passage_index, s.sentence_indices) for s in picked] == [(0, (0, 1)), (1, (0,))]

    def test_passage_scores_blend_with_similarity(self) -> None:
        passages = passages_of(1, 1)
        vecs = np.stack([unit(1, 0.3), unit(1, 0)])  # passage 1's sentence is closer to the question
        by_sim = select_sentences(self.Q, passages, vecs, [1, 1], 1, passage_weight=0.0, passage_scores=[0.9, 0.1])
        by_rank = select_sentences(self.Q, passages, vecs, [1, 1], 1, passage_weight=1.0, passage_scores=[0.9, 0.1])
        assert by_sim[0].passage_index == 1 and by_rank[0].passage_index == 0
        # without scores, the retrieval order is the prior
        assert select_sentences(self.Q, passages, vecs, [1, 1], 1, passage_weight=1.0)[0].passage_index == 0
        # equal scores carry no information
        equal = select_sentences(self.Q, passages, vecs, [1, 1], 1, passage_weight=0.5, passage_scores=[3, 3])
        assert equal[0].passage_index == 1

    def test_min_per_passage(self) -> None:
        passages = passages_of(3, 3)
        vecs = np.stack([unit(1, 0), unit(1, 0.1), unit(1, 0.2), unit(0, 1), unit(0.1, 1), unit(0.2, 1)])
        plain = select_sentences(self.Q, passages, vecs, [1] * 6, 3, neighbours=0, passage_weight=0)
        assert [s.passage_index for s in plain] == [0]
        spread = select_sentences(self.Q, passages, vecs, [1] * 6, 3, neighbours=0, passage_weight=0,
                                  min_per_passage=1)
        assert [(s.passage_index, s.sentence_indices) for s in spread] == [(0, (0, 1)), (1, (2,))]

    def test_vectors_need_not_be_normalised_and_zero_vectors_score_zero(self) -> None:
        passages = passages_of(3)
        vecs = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 3.0]])
        picked = select_sentences(np.array([2.0, 0.0]), passages, vecs, [1, 1, 1], 1, passage_weight=0)
        assert picked[0].sentence_indices == (1,) and picked[0].score == pytest.approx(1.0)

    def test_nested_vectors_and_counts_per_passage(self) -> None:
        passages = passages_of(2, 1)
        flat = np.stack([unit(0, 1), unit(1, 0.1), unit(1, 0)])
        nested = select_sentences(self.Q, passages, [flat[:2], flat[2:]], [[1, 1], [1]], 2, neighbours=0)
        assert nested == select_sentences(self.Q, passages, flat, [1, 1, 1], 2, neighbours=0)
        with_empty = select_sentences(self.Q, [[], *passages], [np.zeros((0, 2)), flat[:2], flat[2:]],
                                      [[], [1, 1], [1]], 2, neighbours=0)
        assert [s.passage_index for s in with_empty] == [s.passage_index + 1 for s in nested]

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"budget_tokens": -1}, "budget_tokens"),
            ({"neighbours": -1}, "neighbours"),
            ({"min_per_passage": 1.5}, "min_per_passage"),
            ({"passage_weight": 1.5}, "passage_weight"),
            ({"passage_scores": [1.0]}, "passage_scores has 1 entries for 2 passages"),
            ({"passage_scores": [1.0, float("nan")]}, "passage score"),
            ({"token_counts": [1, 1]}, "one count per sentence"),
            ({"token_counts": [1, -1, 1]}, "token count"),
            ({"sentence_vecs": np.zeros((2, 2))}, "one row per sentence"),
            ({"question_vec": np.zeros(3)}, "3 dimensions"),
            ({"sentence_vecs": np.full((3, 2), np.inf)}, "finite"),
        ],
    )
    def test_invalid(self, kwargs: dict, match: str) -> None:
        args: dict = dict(question_vec=self.Q, passages=passages_of(2, 1), sentence_vecs=np.ones((3, 2)),
                          token_counts=[1, 1, 1], budget_tokens=5)
        args.update(kwargs)
        with pytest.raises(ConfigError, match=match):
            select_sentences(**args)

    def test_end_to_end_with_real_splits(self) -> None:
        passages = [split_sentences("The tower is in Paris. It was finished in 1889. It is tall."),
                    split_sentences("Rome is old. It has many churches.")]
        vecs = np.stack([unit(1, 0, 0), unit(0.2, 1, 0), unit(0, 0, 1), unit(0, 0, 1), unit(0, 0.1, 1)])
        picked = select_sentences(unit(1, 0, 0), passages, vecs, [6, 7, 4, 4, 5], 13)
        assert [s.text for s in picked] == ["The tower is in Paris. It was finished in 1889."]
