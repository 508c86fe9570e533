"""SQuAD 2.0 question answering, scored end to end: the loader, sampling and the metrics.

A document is one paragraph (id ``<title>-<paragraph index>``, title with ``_`` as
spaces), a query is a question, and answers are scored as the official SQuAD 2.0
evaluation script scores them: both sides normalised (:func:`normalize_answer`),
exact match and token F1 taking the best gold answer, and an unanswerable question
right only when the system abstains. Everything here is pure; the pipelines that
produce the answers live in :mod:`pipelines.squad_eval`.
"""

from __future__ import annotations

import collections
import json
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from rag_core.errors import ConfigError
from rag_core.validation import check_int

from rag_core.answers import ABSTAIN as ABSTAIN_ANSWER  # the pipeline's one abstention answer

HIT_KS = (1, 5)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)
_QUOTES = "\"'`\u2018\u2019\u201c\u201d"


@dataclass(frozen=True)
class Paragraph:
    """One paragraph, indexed as one document."""

    id: str       # "<article title>-<paragraph index>", e.g. "Warsaw-3"
    title: str    # the article title with "_" as spaces
    text: str     # the paragraph (SQuAD's "context")
    article: str  # the article title as SQuAD spells it

    def as_record(self) -> dict[str, str]:
        """The ``beam-rag ingest`` JSONL record."""
        return {"id": self.id, "title": self.title, "text": self.text}


@dataclass(frozen=True)
class Question:
    """One question and what a right answer looks like."""

    id: str
    question: str
    answers: tuple[str, ...]  # gold answer texts, as given (empty when unanswerable)
    is_impossible: bool
    doc_id: str               # the paragraph it was asked about
    article: str

    @property
    def answerable(self) -> bool:
        return not self.is_impossible

    def as_record(self) -> dict[str, str]:
        """The ``beam-rag query`` JSONL record."""
        return {"id": self.id, "question": self.question}


@dataclass(frozen=True)
class SquadSet:
    """A SQuAD v2.0 file: the paragraphs (documents) and the questions, in file order."""

    paragraphs: tuple[Paragraph, ...]
    questions: tuple[Question, ...]

    def paragraphs_of(self, articles: Iterable[str]) -> list[Paragraph]:
        """The paragraphs of these articles (SQuAD spelling), in file order."""
        wanted = set(articles)
        return [p for p in self.paragraphs if p.article in wanted]


def load_squad(path: str | Path) -> SquadSet:
    """Read a SQuAD v2.0 JSON file (``data[].title``, ``data[].paragraphs[].context`` and ``.qas[]``).

    Raises:
        ConfigError: the file is missing, is not JSON, or does not have the SQuAD shape.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"SQuAD file not found: {file} (pass --data-file pointing at a SQuAD v2.0 JSON file)")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"SQuAD file {file} is not valid UTF-8 JSON: {exc}") from None
    try:
        return parse_squad(raw)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"SQuAD file {file} does not look like SQuAD v2.0 JSON (missing or bad {exc})") from None


def parse_squad(raw: Mapping[str, Any]) -> SquadSet:
    """The parsed SQuAD JSON object as a :class:`SquadSet`.

    >>> s = parse_squad({"data": [{"title": "Steam_engine", "paragraphs": [{"context": "Watt.", "qas": [
    ...     {"id": "q1", "question": "Who?", "answers": [{"text": "Watt"}], "is_impossible": False}]}]}]})
    >>> s.paragraphs[0].id, s.paragraphs[0].title, s.questions[0].doc_id, s.questions[0].answers
    ('Steam_engine-0', 'Steam engine', 'Steam_engine-0', ('Watt',))
    """
    paragraphs: list[Paragraph] = []
    questions: list[Question] = []
    for article in raw["data"]:
        name = str(article["title"])
        for n, paragraph in enumerate(article["paragraphs"]):
            doc = Paragraph(id=f"{name}-{n}", title=name.replace("_", " "), text=str(paragraph["context"]),
                            article=name)
            paragraphs.append(doc)
            for qa in paragraph["qas"]:
                impossible = bool(qa.get("is_impossible", False))
                golds = () if impossible else tuple(str(a["text"]) for a in qa["answers"])
                questions.append(Question(id=str(qa["id"]), question=str(qa["question"]), answers=golds,
                                          is_impossible=impossible, doc_id=doc.id, article=name))
    return SquadSet(tuple(paragraphs), tuple(questions))


def sample(questions: Sequence[Question], n: int | None = None, every: int | None = None,
           seed: int = 0) -> list[Question]:
    """A deterministic subset, in file order: every ``every``-th question (the first, the
    ``every``+1-th, ...), or ``n`` questions drawn with ``seed``, or all of them.

    >>> qs = [Question(str(i), "?", (), True, "d-0", "d") for i in range(10)]
    >>> [q.id for q in sample(qs, every=4)], [q.id for q in sample(qs, n=3)] == [q.id for q in sample(qs, n=3)]
    (['0', '4', '8'], True)
    """
    if n is not None and every is not None:
        raise ConfigError("--sample and --every are alternatives: pass one of them")
    if every is not None:
        return list(questions[::check_int("--every", every, minimum=1)])
    if n is not None:
        check_int("--sample", n, minimum=1)
        picked = random.Random(seed).sample(range(len(questions)), min(n, len(questions)))
        return [questions[i] for i in sorted(picked)]
    return list(questions)


# --------------------------------------------------------------------------- answer scoring


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and the articles a/an/the removed, whitespace collapsed
    (the official SQuAD normalisation).

    >>> normalize_answer("The  Eiffel-Tower, in Paris!")
    'eiffeltower in paris'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(answers: Sequence[str]) -> list[str]:
    """Gold answers that survive normalisation; ``[""]`` (abstain) when none does, as the official script."""
    return [a for a in answers if normalize_answer(a)] or [""]


def _f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if not same:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals a normalised gold answer; no gold answer
    means unanswerable, right only for an empty prediction.

    >>> exact_match("the Watt", ["Watt", "James Watt"]), exact_match("", []), exact_match("x", [])
    (1.0, 1.0, 0.0)
    """
    pred = normalize_answer(prediction)
    return max(float(pred == normalize_answer(g)) for g in _golds(answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Token-overlap F1 against the best gold answer (normalised tokens, as the official script).

    >>> round(token_f1("James Watt improved it", ["Watt", "James Watt"]), 3)
    0.667
    """
    return max(_f1(prediction, g) for g in _golds(answers))


def contains_gold(prediction: str, answers: Sequence[str]) -> bool:
    """Whether some gold answer appears, as whole normalised words, inside the prediction.

    >>> contains_gold("It was James Watt.", ["james watt"]), contains_gold("Watts", ["Watt"])
    (True, False)
    """
    pred = f" {normalize_answer(prediction)} "
    return any(f" {normalize_answer(g)} " in pred for g in answers if normalize_answer(g))


def is_abstention(answer: str | None) -> bool:
    """None, empty, or the pipeline's "I don't know" (any case, quotes or final full stop).

    >>> is_abstention(None), is_abstention("  "), is_abstention("\\u201cI DON\\u2019T KNOW.\\u201d")
    (True, True, True)
    >>> is_abstention("I don't know who")
    False
    """
    if answer is None:
        return True
    text = answer.strip().strip(_QUOTES).strip().rstrip(".").strip().strip(_QUOTES)
    return not text or text.replace("\u2019", "'").lower() == ABSTAIN_ANSWER.lower()


@dataclass(frozen=True)
class AnswerScore:
    """One question's outcome. A dead-lettered (missing) question scores 0 everywhere."""

    question: Question
    answer: str | None         # what came back (None: missing, or a null answer)
    returned: bool             # a row came back (False: dead-lettered)
    abstained: bool
    exact: float
    f1: float
    hits: tuple[bool, ...]     # gold paragraph among the first k sources, for k in HIT_KS
    contains_gold: bool
    answer_words: int          # 0 for an abstention

    def as_row(self) -> dict[str, Any]:
        """The per-question row of ``runs.json``."""
        q = self.question
        return {"id": q.id, "question": q.question, "answerable": q.answerable, "gold_answers": list(q.answers),
                "gold_doc_id": q.doc_id, "answer": self.answer, "returned": self.returned,
                "abstained": self.abstained, "exact": self.exact, "f1": round(self.f1, 4),
                **{f"hit@{k}": hit for k, hit in zip(HIT_KS, self.hits)}}


def score_question(question: Question, row: Mapping[str, Any] | None) -> AnswerScore:
    """Score one question against its query output row (None when it was dead-lettered).

    >>> q = Question("q", "Who?", ("Watt",), False, "Steam_engine-0", "Steam_engine")
    >>> s = score_question(q, {"answer": "Watt.", "sources": [{"doc_id": "x"}, {"doc_id": "Steam_engine-0"}]})
    >>> s.exact, s.f1, s.hits, s.abstained
    (1.0, 1.0, (False, True), False)
    """
    if row is None:
        return AnswerScore(question, None, False, False, 0.0, 0.0, tuple(False for _ in HIT_KS), False, 0)
    answer = row.get("answer")
    abstained = is_abstention(answer)
    prediction = "" if abstained or answer is None else str(answer)
    docs = [s.get("doc_id") for s in row.get("sources") or [] if isinstance(s, Mapping)]
    return AnswerScore(
        question, answer, True, abstained, exact_match(prediction, question.answers),
        token_f1(prediction, question.answers), tuple(question.doc_id in docs[:k] for k in HIT_KS),
        contains_gold(prediction, question.answers), len(prediction.split()))


def score_rows(questions: Sequence[Question], rows: Iterable[Mapping[str, Any]]) -> list[AnswerScore]:
    """Each question scored against the output row with its id (rows of other ids are ignored)."""
    by_id = {str(r.get("id")): r for r in rows}
    return [score_question(q, by_id.get(q.id)) for q in questions]


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarize(scores: Sequence[AnswerScore]) -> dict[str, Any]:
    """The metrics over scored questions (fractions in [0, 1]; None where nothing to average).

    - ``exact_match`` / ``f1``: SQuAD 2.0 overall (an unanswerable question counts 1 when abstained).
    - ``has_answer_*``: answerable questions; a false abstention or a missing answer scores 0.
    - ``attempted_*``: the answerable questions it did answer (no abstention).
    - ``no_answer_abstention_rate``: unanswerable questions it abstained on (higher is better);
      ``false_abstention_rate``: answerable ones it abstained on (lower is better).
    - ``hit@k``: the gold paragraph among the first k sources the generator was given (answerable).
    - ``mean_answer_words``: over every answer that is not an abstention;
      ``answer_contains_gold``: attempted answers holding a gold answer verbatim (normalised words).
    """
    has = [s for s in scores if s.question.answerable]
    no = [s for s in scores if not s.question.answerable]
    attempted = [s for s in has if s.returned and not s.abstained]
    answers = [s for s in scores if s.returned and not s.abstained]
    out: dict[str, Any] = {
        "questions": len(scores), "answerable": len(has), "unanswerable": len(no),
        "answered": sum(s.returned for s in scores), "dead_lettered": sum(not s.returned for s in scores),
        "abstained": sum(s.abstained for s in scores), "attempted": len(attempted),
        "exact_match": _mean([s.exact for s in scores]), "f1": _mean([s.f1 for s in scores]),
        "has_answer_exact_match": _mean([s.exact for s in has]), "has_answer_f1": _mean([s.f1 for s in has]),
        "attempted_exact_match": _mean([s.exact for s in attempted]),
        "attempted_f1": _mean([s.f1 for s in attempted]),
        "no_answer_abstention_rate": _mean([float(s.abstained) for s in no]),
        "false_abstention_rate": _mean([float(s.abstained) for s in has]),
    }
    for i, k in enumerate(HIT_KS):
        out[f"hit@{k}"] = _mean([float(s.hits[i]) for s in has])
    out["mean_answer_words"] = _mean([float(s.answer_words) for s in answers])
    out["answer_contains_gold"] = _mean([float(s.contains_gold) for s in attempted])
    return out


def score_answers(questions: Sequence[Question], rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`summarize` of :func:`score_rows`: the metrics of one run.

    >>> qs = [Question("a", "Who?", ("Watt",), False, "d-0", "d"), Question("u", "Why?", (), True, "d-0", "d")]
    >>> m = score_answers(qs, [{"id": "a", "answer": "Watt", "sources": []},
    ...                        {"id": "u", "answer": "I don't know", "sources": []}])
    >>> m["exact_match"], m["no_answer_abstention_rate"], m["dead_lettered"]
    (1.0, 1.0, 0)
    """
    return summarize(score_rows(questions, rows))
