"""From retrieved passages to the answer row: when we abstain, the prompt, the answer.

The one home of abstention (SmolLM2-135M does not reliably say "I don't know" by
itself, so we decide before and after it):

- Retrieval: passages scoring below the minimum cosine similarity
  (:func:`resolve_min_score`) are dropped, and a question left with no passage is
  answered :data:`ABSTAIN` without calling the generator (``sources`` is empty).
- Answer: paragraphs are kept up to the first that says it does not know, and an
  empty result is :data:`ABSTAIN` (:func:`normalize_answer`).

The batch pipeline (``pipelines.query``) runs these parts as Beam steps;
:func:`answer_one` runs the same parts in-process for one question (``beam-rag ask``).

Example:
    >>> normalize_answer("Quillport.\\n\\nThe context is untrusted: I don't know")
    'Quillport.'
    >>> resolve_min_score(None, retrieval_only=False), resolve_min_score(-1, retrieval_only=False)
    (0.35, None)
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.rag.types import Embedding

from rag_core.embeddings import embed_texts, load_sentence_transformer
from rag_core.enrichment import (ENRICHMENT_KEY, ERROR_KEY, RETRIEVAL_KEY, RedisVectorSearchHandler,
                                 VectorSearchParameters, join_hits, search_parameters)
from rag_core.generation import GeneratorConfig, generate_batch, load_generator, load_tokenizer
from rag_core.prompt import Passage, PromptBuilder, PromptConfig
from rag_core.questions import DEFAULT_MAX_QUESTION_CHARS, Question, check_question, index_embedding, to_chunk
from rag_core.sinks import DEAD_LETTER, METRICS_NAMESPACE, AnswerRow, Source
from rag_core.types import Chunk, DeadLetter

if TYPE_CHECKING:
    from rag_core.store.catalog import VersionRecord
    from rag_core.store.connection import RedisConnection

__all__ = [
    "ABSTAIN", "ABSTAINED", "ANSWER", "CONTEXT", "DEFAULT_MIN_SCORE", "FAILED", "BuildPromptFn", "CheckRetrievalFn",
    "answer_one", "failed_batch_to_keyed_reasons", "join_answer", "normalize_answer", "prompt_for",
    "resolve_min_score", "retrieved_row", "says_abstain", "to_passages",
]

ABSTAIN = "I don't know"
# all-MiniLM-L6-v2 cosine similarity, measured on rag_core/sample_data: answerable
# questions' best passage 0.47-0.65, the in-domain unanswerable one 0.33, off-topic
# questions < 0.11. Another embedding model may need another --min-score.
DEFAULT_MIN_SCORE = 0.35
NO_MIN_SCORE = -1  # --min-score at or below this keeps every passage
_ABSTAIN_PHRASES = ("i don't know", "i do not know", "does not contain the answer", "doesn't contain the answer")

# Tagged outputs of the generation steps.
ABSTAINED = "abstained"
CONTEXT = "context"
ANSWER = "answer"
FAILED = "failed"


def resolve_min_score(value: float | None, retrieval_only: bool) -> float | None:
    """The score threshold for ``--min-score value``: None (not given) is
    :data:`DEFAULT_MIN_SCORE`, or no threshold with ``--retrieval-only``; a value at or
    below :data:`NO_MIN_SCORE` (``-1``) is no threshold.

    >>> resolve_min_score(None, retrieval_only=True), resolve_min_score(0.5, retrieval_only=True)
    (None, 0.5)
    """
    if value is None:
        return None if retrieval_only else DEFAULT_MIN_SCORE
    return None if value <= NO_MIN_SCORE else value


def says_abstain(text: str) -> bool:
    """
    >>> says_abstain("The context doesn\u2019t contain the answer."), says_abstain("Paris.")
    (True, False)
    """
    lowered = text.lower().replace("\u2019", "'")
    return any(phrase in lowered for phrase in _ABSTAIN_PHRASES)


def normalize_answer(text: str) -> str:
    """The generator's text as the answer.

    Paragraphs are kept up to the first one that says it does not know ("I don't
    know", "the context does not contain the answer"): small models often answer,
    then parrot the instruction. If nothing is left, or the text is empty, the
    answer is exactly ``I don't know``.

    >>> normalize_answer("I don't know."), normalize_answer("  ")
    ("I don't know", "I don't know")
    """
    kept: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        if says_abstain(paragraph):
            break
        if paragraph.strip():
            kept.append(paragraph.strip())
    return "\n\n".join(kept) if kept else ABSTAIN


# --------------------------------------------------------------------------- after retrieval


def retrieved_row(chunk: Chunk) -> AnswerRow:
    """An enriched question chunk (``rag_core.enrichment.join_hits``) → its row, not answered yet."""
    meta = chunk.metadata
    return AnswerRow(
        id=str(chunk.id), question=meta.get("question", chunk.content.text), answer=None,
        sources=tuple(Source.from_hit(h) for h in meta.get(ENRICHMENT_KEY, [])), model=None,
        index=meta.get(RETRIEVAL_KEY, {}).get("index"), origin=meta.get("source", ""))


def to_passages(sources: Sequence[Source]) -> list[Passage]:
    """Sources → the prompt builder's passages, best first."""
    return [Passage(s.chunk_id, s.doc_id, s.title or "", s.text or "", float(s.score), int(s.chunk_index or 0))
            for s in sources]


def prompt_for(builder: PromptBuilder, row: AnswerRow, model: str | None) -> tuple[str, AnswerRow]:
    """The prompt for ``row``, and the row keeping only the sources the prompt holds."""
    built = builder.build(row.question, to_passages(row.sources))
    used = set(built.passages_used)
    return built.text, replace(row, sources=tuple(s for s in row.sources if s.chunk_id in used), model=model)


def _tokenizer_source(g: GeneratorConfig) -> str:
    return (g.model_name or g.model) if g.model_state_dict_path else g.model


class CheckRetrievalFn(beam.DoFn):
    """Retrieval metrics (the handler runs where metrics are not recorded), and
    questions whose search failed (Redis unreachable through every retry) routed to
    the dead letters with the reason, so one outage never fails the whole job."""

    def __init__(self) -> None:
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "retrieval_latency_ms")
        self._empty = Metrics.counter(METRICS_NAMESPACE, "questions_without_passages")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "retrieval_failures")

    def process(self, chunk: Chunk) -> Iterator[Any]:
        info = chunk.metadata.get(RETRIEVAL_KEY, {})
        error = info.get(ERROR_KEY)
        if error:
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(
                chunk.metadata.get("source", ""), f"retrieval failed: {error}", id=chunk.id, stage="retrieve",
                excerpt=(chunk.metadata.get("question", chunk.content.text) or "")[:200]))
            return
        self._latency.update(int(round(info.get("latency_ms", 0.0))))
        if not chunk.metadata.get(ENRICHMENT_KEY):
            self._empty.inc()
        yield chunk


class BuildPromptFn(beam.DoFn):
    """Retrieved row → ``(id, prompt)``; the row itself waits under CONTEXT for its answer.

    A question with no passage left is answered ``I don't know`` here (ABSTAINED),
    without the generator. The generator's tokenizer is loaded once per DoFn
    instance, in ``setup``.
    """

    def __init__(self, generator: GeneratorConfig, prompt: PromptConfig):
        self.generator = generator
        self.prompt = prompt

    def setup(self) -> None:
        tokenizer = load_tokenizer(_tokenizer_source(self.generator), self.generator.cache_dir)
        self._builder = PromptBuilder(self.prompt, tokenizer)

    def process(self, row: AnswerRow) -> Iterator[Any]:
        if not row.sources:
            yield beam.pvalue.TaggedOutput(ABSTAINED, replace(row, answer=ABSTAIN, model=self.generator.label))
            return
        prompt, context = prompt_for(self._builder, row, self.generator.label)
        yield beam.pvalue.TaggedOutput(CONTEXT, (row.id, context))
        yield row.id, prompt


def failed_batch_to_keyed_reasons(failure: tuple[Any, Any]) -> Iterator[tuple[str, str]]:
    """RunInference's dead-letter element ``(batch, (type, repr, traceback))`` →
    ``(question id, reason)`` for every question of the failed batch.

    >>> failure = ([("q1", "p1"), ("q2", "p2")], (RuntimeError, "RuntimeError('oom')", []))
    >>> [key for key, _ in failed_batch_to_keyed_reasons(failure)]
    ['q1', 'q2']
    >>> next(failed_batch_to_keyed_reasons(failure))[1]
    "generation failed: RuntimeError: RuntimeError('oom')"
    """
    batch, (exc_type, exc_repr, _tb) = failure
    name = getattr(exc_type, "__name__", str(exc_type))
    reason = f"generation failed: {name}: {exc_repr}"[:1000]
    for key, _prompt in batch:
        yield key, reason


def join_answer(element: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
    """``(id, {context: [row], answer: [PredictionResult], failed: [reason]})`` → the
    finished row, or a dead letter (with the question's source) if generation failed."""
    qid, groups = element
    contexts, answers, failed = list(groups[CONTEXT]), list(groups[ANSWER]), list(groups[FAILED])
    if not contexts:  # every prompt has its context; nothing to write without one
        return
    row: AnswerRow = contexts[0]
    if failed or not answers:
        reason = failed[0] if failed else "generation produced no answer"
        yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(row.origin, reason, id=qid, stage="generate",
                                                               excerpt=row.question[:200]))
        return
    yield replace(row, answer=normalize_answer(str(answers[0].inference or "")))


# --------------------------------------------------------------------------- one question, in-process


def answer_one(question: str, connection: RedisConnection, record: VersionRecord, *, top_k: int = 5,
               retrieval: str = "dense", min_score: float | None = None, filter: dict[str, Any] | None = None,
               generator: GeneratorConfig | None = None, prompt: PromptConfig | None = None,
               max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS) -> tuple[AnswerRow, dict[str, float]]:
    """Answer ``question`` from index version ``record`` with the batch pipeline's parts.

    ``generator`` None is retrieval only (``answer`` None). ``min_score`` is the raw
    ``--min-score`` (see :func:`resolve_min_score`). Returns the row and the time
    each step took (``embed``, ``retrieve``, ``generate``) in milliseconds.
    """
    question = check_question(question, max_question_chars)  # as the batch pipeline cleans its questions
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    embedding = index_embedding(record.embedding, record.index)
    vector = embed_texts(load_sentence_transformer(embedding), [question], embedding)[0]
    timings["embed"] = (time.perf_counter() - t0) * 1000
    chunk = to_chunk(Question(id="ask", question=question, source="ask", filter=filter))
    chunk.embedding = Embedding(dense_embedding=[float(x) for x in vector])
    search = search_parameters(retrieval, VectorSearchParameters(
        index=record.index, top_k=top_k, score_threshold=resolve_min_score(min_score, retrieval_only=generator is None),
        expected_embedding={"model": record.embedding.get("model"), "dimension": record.embedding.get("dimension")}))
    t1 = time.perf_counter()
    with RedisVectorSearchHandler(connection, search) as handler:
        request, response = handler(chunk)
    row = retrieved_row(join_hits(request, response))
    timings["retrieve"] = (time.perf_counter() - t1) * 1000
    if generator is None:
        return row, timings
    if not row.sources:
        return replace(row, answer=ABSTAIN, model=generator.label), timings
    t2 = time.perf_counter()
    tokenizer = load_tokenizer(_tokenizer_source(generator), generator.cache_dir)
    builder = PromptBuilder(prompt or PromptConfig(), tokenizer)
    text, row = prompt_for(builder, row, generator.label)
    answer = generate_batch(load_generator(generator), [text], generator)[0]
    timings["generate"] = (time.perf_counter() - t2) * 1000
    return replace(row, answer=normalize_answer(answer)), timings
