"""SQuAD 2.0 loading, sampling and answer scoring (rag_core.evaluation.squad), on hand-made rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag_core.errors import ConfigError
from rag_core.evaluation.squad import (
    ABSTAIN_ANSWER, Question, contains_gold, exact_match, is_abstention, load_squad, normalize_answer, sample,
    score_answers, score_rows, token_f1,
)

SQUAD_FILE = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "squad2-dev" / "squad2_dev_subset.json"

TINY = {"version": "v2.0", "data": [
    {"title": "Steam_engine", "paragraphs": [
        {"context": "James Watt improved the steam engine in 1776.", "qas": [
            {"id": "a1", "question": "Who improved the steam engine?", "is_impossible": False,
             "answers": [{"text": "James Watt", "answer_start": 0}, {"text": "Watt", "answer_start": 6}]},
            {"id": "u1", "question": "Who invented the diesel engine?", "is_impossible": True,
             "answers": [], "plausible_answers": [{"text": "James Watt", "answer_start": 0}]}]},
        {"context": "Steam engines drove pumps in mines.", "qas": [
            {"id": "a2", "question": "What did steam engines drive?", "is_impossible": False,
             "answers": [{"text": "pumps", "answer_start": 20}]}]}]},
    {"title": "Warsaw", "paragraphs": [
        {"context": "Warsaw is the capital of Poland.", "qas": [
            {"id": "a3", "question": "What is Warsaw the capital of?", "is_impossible": False,
             "answers": [{"text": "Poland", "answer_start": 25}]},
            {"id": "u2", "question": "What is the capital of Germany?", "is_impossible": True, "answers": []}]}]},
]}


def _q(qid: str, answers: tuple[str, ...] = (), doc: str = "A-0") -> Question:
    return Question(qid, f"question {qid}?", answers, not answers, doc, doc.rsplit("-", 1)[0])


def _row(qid: str, answer: str | None, *docs: str) -> dict[str, Any]:
    return {"id": qid, "question": "?", "answer": answer, "model": "m", "index": "i",
            "sources": [{"chunk_id": f"{d}#0", "doc_id": d, "title": "", "score": 0.5, "text": ""} for d in docs]}


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY), encoding="utf-8")
    return path


class TestLoadSquad:
    def test_paragraphs_become_documents(self, tiny_file: Path) -> None:
        data = load_squad(tiny_file)
        assert [p.id for p in data.paragraphs] == ["Steam_engine-0", "Steam_engine-1", "Warsaw-0"]
        assert data.paragraphs[0].title == "Steam engine" and data.paragraphs[0].article == "Steam_engine"
        assert data.paragraphs[0].as_record() == {"id": "Steam_engine-0", "title": "Steam engine",
                                                  "text": "James Watt improved the steam engine in 1776."}

    def test_questions_keep_file_order_gold_answers_and_paragraph(self, tiny_file: Path) -> None:
        qs = load_squad(tiny_file).questions
        assert [q.id for q in qs] == ["a1", "u1", "a2", "a3", "u2"]
        assert qs[0].answers == ("James Watt", "Watt") and qs[0].answerable and qs[0].doc_id == "Steam_engine-0"
        # Unanswerable: no gold answers, even when SQuAD lists plausible ones.
        assert qs[1].is_impossible and qs[1].answers == ()
        assert qs[2].doc_id == "Steam_engine-1" and qs[4].doc_id == "Warsaw-0"
        assert qs[3].as_record() == {"id": "a3", "question": "What is Warsaw the capital of?"}

    def test_paragraphs_of_articles(self, tiny_file: Path) -> None:
        assert [p.id for p in load_squad(tiny_file).paragraphs_of(["Warsaw"])] == ["Warsaw-0"]

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="SQuAD file not found.*--data-file"):
            load_squad(tmp_path / "nope.json")

    def test_not_json(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.json"
        bad.write_bytes(b"{not json")
        with pytest.raises(ConfigError, match="not valid UTF-8 JSON"):
            load_squad(bad)

    def test_wrong_shape(self, tmp_path: Path) -> None:
        bad = tmp_path / "shape.json"
        bad.write_text(json.dumps({"data": [{"title": "T"}]}), encoding="utf-8")
        with pytest.raises(ConfigError, match="does not look like SQuAD v2.0.*paragraphs"):
            load_squad(bad)

    def test_the_shared_dev_subset(self) -> None:
        data = load_squad(SQUAD_FILE)
        assert len({p.article for p in data.paragraphs}) == 12
        assert len(data.paragraphs) == 469 and len(data.questions) == 4673
        assert sum(q.is_impossible for q in data.questions) == 2430
        assert all(q.answers for q in data.questions if q.answerable)
        assert len({p.id for p in data.paragraphs}) == 469


class TestSample:
    QS = [_q(str(i)) for i in range(10)]

    def test_every_k_in_file_order(self) -> None:
        assert [q.id for q in sample(self.QS, every=3)] == ["0", "3", "6", "9"]
        assert [q.id for q in sample(self.QS, every=1)] == [q.id for q in self.QS]

    def test_seeded_sample_is_fixed_sorted_and_seed_dependent(self) -> None:
        first = [q.id for q in sample(self.QS, n=4, seed=7)]
        assert first == [q.id for q in sample(self.QS, n=4, seed=7)]
        assert len(set(first)) == 4 and first == sorted(first, key=int)
        assert {tuple(q.id for q in sample(self.QS, n=4, seed=s)) for s in range(5)} != {tuple(first)}

    def test_sample_larger_than_set_takes_all(self) -> None:
        assert len(sample(self.QS, n=50)) == 10

    def test_default_is_everything(self) -> None:
        assert sample(self.QS) == self.QS

    @pytest.mark.parametrize("kwargs, message", [
        ({"n": 2, "every": 2}, "--sample and --every are alternatives"),
        ({"every": 0}, "--every must be an int >= 1"),
        ({"n": 0}, "--sample must be an int >= 1"),
    ])
    def test_bad_arguments(self, kwargs: dict[str, int], message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            sample(self.QS, **kwargs)


class TestAnswerMetrics:
    @pytest.mark.parametrize("text, expected", [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  an apple,  a pear ", "apple pear"),
        ("Theory of the state", "theory of state"),
        ("1,776.", "1776"),
    ])
    def test_normalize(self, text: str, expected: str) -> None:
        assert normalize_answer(text) == expected

    def test_exact_match_takes_the_best_gold(self) -> None:
        assert exact_match("watt", ["James Watt", "Watt"]) == 1.0
        assert exact_match("James Watt improved it", ["James Watt"]) == 0.0

    def test_f1_hand_computed(self) -> None:
        # pred {james, watt, improved, it}, gold {james, watt}: P = 2/4, R = 2/2 -> F1 = 2/3.
        assert token_f1("James Watt improved it", ["James Watt"]) == pytest.approx(2 / 3)
        assert token_f1("Watt", ["James Watt", "Watt"]) == 1.0
        assert token_f1("pumps", ["mines"]) == 0.0

    def test_unanswerable_is_right_only_when_empty(self) -> None:
        assert exact_match("", []) == token_f1("", []) == 1.0
        assert exact_match("Berlin", []) == token_f1("Berlin", []) == 0.0
        # An empty prediction for an answerable question scores 0.
        assert token_f1("", ["Watt"]) == 0.0

    def test_contains_gold_whole_words(self) -> None:
        assert contains_gold("It was improved by James Watt in 1776.", ["James Watt"])
        assert not contains_gold("Wattage", ["Watt"])
        assert not contains_gold("anything", [])

    @pytest.mark.parametrize("answer", [None, "", "  ", ABSTAIN_ANSWER, "i don't know.", "I DON\u2019T KNOW",
                                        "\"I don't know\"", "\u201cI don't know.\u201d"])
    def test_abstentions(self, answer: str | None) -> None:
        assert is_abstention(answer)

    @pytest.mark.parametrize("answer", ["I know", "I don't know who", "Watt", "Nobody knows"])
    def test_not_abstentions(self, answer: str) -> None:
        assert not is_abstention(answer)


class TestScoreAnswers:
    QUESTIONS = [_q("a1", ("James Watt", "Watt"), "S-0"), _q("a2", ("pumps",), "S-1"),
                 _q("a3", ("Poland",), "W-0"), _q("a4", ("1776",), "S-0"),
                 _q("u1", (), "S-0"), _q("u2", (), "W-0"), _q("u3", (), "W-0")]
    ROWS = [
        _row("a1", "James Watt improved it.", "S-0", "W-0"),  # F1 2/3, contains gold, hit@1
        _row("a2", "pumps", "W-0", "S-1"),                    # exact, hit@5 only
        _row("a3", ABSTAIN_ANSWER, "W-0"),                    # false abstention, but retrieved
        # a4 is missing: dead-lettered
        _row("u1", "I don't know."),                          # right abstention
        _row("u2", "Berlin", "W-0"),                          # answered the unanswerable
        _row("u3", None),                                     # null answer: an abstention
        _row("zz", "stray row of another question"),          # ignored
    ]

    @pytest.fixture
    def metrics(self) -> dict[str, Any]:
        return score_answers(self.QUESTIONS, self.ROWS)

    def test_counts_reconcile(self, metrics: dict[str, Any]) -> None:
        assert (metrics["questions"], metrics["answerable"], metrics["unanswerable"]) == (7, 4, 3)
        assert (metrics["answered"], metrics["dead_lettered"]) == (6, 1)
        assert (metrics["abstained"], metrics["attempted"]) == (3, 2)

    def test_answerable_scores_count_false_abstentions_and_missing_as_zero(self, metrics: dict[str, Any]) -> None:
        assert metrics["has_answer_exact_match"] == 0.25                    # a2 of a1..a4
        assert metrics["has_answer_f1"] == round((2 / 3 + 1) / 4, 4)
        assert metrics["attempted_exact_match"] == 0.5                      # a1, a2
        assert metrics["attempted_f1"] == round((2 / 3 + 1) / 2, 4)

    def test_abstention_rates(self, metrics: dict[str, Any]) -> None:
        assert metrics["no_answer_abstention_rate"] == round(2 / 3, 4)       # u1, u3
        assert metrics["false_abstention_rate"] == 0.25                     # a3

    def test_overall_squad2_scores(self, metrics: dict[str, Any]) -> None:
        # exact: a2, u1, u3 ; F1: a1 2/3 + a2 + u1 + u3.
        assert metrics["exact_match"] == round(3 / 7, 4)
        assert metrics["f1"] == round((2 / 3 + 3) / 7, 4)

    def test_retrieval_hits_on_answerable(self, metrics: dict[str, Any]) -> None:
        assert metrics["hit@1"] == 0.5                                      # a1, a3
        assert metrics["hit@5"] == 0.75                                     # a1, a2, a3; a4 missing

    def test_answer_shape(self, metrics: dict[str, Any]) -> None:
        # Non-abstaining answers: "James Watt improved it." (4), "pumps" (1), "Berlin" (1).
        assert metrics["mean_answer_words"] == 2.0
        assert metrics["answer_contains_gold"] == 1.0                       # a1 and a2 of the attempted

    def test_per_question_rows(self) -> None:
        rows = {s.question.id: s.as_row() for s in score_rows(self.QUESTIONS, self.ROWS)}
        assert rows["a1"]["f1"] == round(2 / 3, 4) and rows["a1"]["hit@1"] is True
        assert rows["a1"]["gold_answers"] == ["James Watt", "Watt"] and rows["a1"]["gold_doc_id"] == "S-0"
        assert rows["a3"]["abstained"] is True and rows["a3"]["exact"] == 0.0
        assert rows["a4"]["returned"] is False and rows["a4"]["answer"] is None and rows["a4"]["f1"] == 0.0
        assert rows["u1"]["abstained"] is True and rows["u1"]["exact"] == 1.0
        assert json.loads(json.dumps(list(rows.values())))  # JSON-ready

    def test_empty_groups_are_none(self) -> None:
        only_unanswerable = score_answers([_q("u1")], [_row("u1", ABSTAIN_ANSWER)])
        assert only_unanswerable["has_answer_f1"] is None and only_unanswerable["hit@1"] is None
        assert only_unanswerable["f1"] == 1.0 and only_unanswerable["mean_answer_words"] is None
