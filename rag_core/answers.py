"""From retrieved passages to the answer row: when we abstain, the prompt, the answer.

The one home of abstention (SmolLM2-135M does not reliably say "I don't know" by
itself, so we decide before and after it):

- Retrieval: passages scoring below the minimum cosine similarity
  (:func:`resolve_min_score`) are dropped, and a question left with no passage is
  answered :data:`ABSTAIN` without calling the generator (``sources`` is empty).
- Answer: paragraphs are kept up to the first that says it does not know, and an
  empty result is :data:`ABSTAIN` (:func:`normalize_answer`).
- Confidence: the generated answer is snapped to the shortest span of the sentences
  the generator read (:func:`rag_core.grounding.snap_to_span`), and
  :func:`confidence` combines the question's best sentence similarity, the
  generator's mean token log-probability, how well the answer is grounded, the
  question's names the sources never mention and a negated question answered from a
  sentence that negates nothing (:mod:`rag_core.coverage`); below
  :attr:`AnswerPolicy.abstain_below` the answer is :data:`ABSTAIN` (the generated
  text stays in ``answer_generated``). When even a perfect answer could not clear
  the threshold (:func:`confidence_ceiling`), the generator is not called at all.

The batch pipeline (``pipelines.query``) runs these parts as Beam steps;
:func:`answer_one` runs the same parts in-process for one question (``beam-rag ask``).

Example:
    >>> normalize_answer("Quillport.\\n\\nThe context is untrusted: I don't know")
    'Quillport.'
    >>> resolve_min_score(None, retrieval_only=False), resolve_min_score(-1, retrieval_only=False)
    (0.2, None)
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.rag.types import Embedding

from rag_core.context import ContextConfig, ContextSelector
from rag_core.coverage import missing_names, unmatched_negation
from rag_core.decoding import trim_answer
from rag_core.embeddings import EmbeddingConfig, embed_texts, for_index, load_sentence_transformer
from rag_core.extraction import best_candidate
from rag_core.grounding import snap_to_span
from rag_core.enrichment import (ENRICHMENT_KEY, ERROR_KEY, RETRIEVAL_KEY, RedisVectorSearchHandler,
                                 VectorSearchParameters, join_hits, search_parameters)
from rag_core.generation import GeneratorConfig, generate_batch, load_generator, load_tokenizer
from rag_core.progress import QUESTIONS_SETTLED, ProgressCounter
from rag_core.prompt import Passage, PromptBuilder, PromptConfig
from rag_core.questions import DEFAULT_MAX_QUESTION_CHARS, Question, check_question, to_chunk
from rag_core.sinks import DEAD_LETTER, METRICS_NAMESPACE, AnswerRow, AnswerSpan, Source
from rag_core.validation import check_number
from rag_core.types import Chunk, DeadLetter

if TYPE_CHECKING:
    from rag_core.store.catalog import VersionRecord
    from rag_core.store.connection import RedisConnection

__all__ = [
    "ABSTAIN", "ABSTAINED", "ANSWER", "CONTEXT", "DEFAULT_MIN_SCORE", "FAILED", "AnswerPolicy", "BuildPromptFn",
    "CheckRetrievalFn", "confidence", "confidence_ceiling", "finish_answer", "settled_before_generation",
    "answer_one", "failed_batch_to_keyed_reasons", "join_answer", "normalize_answer", "prompt_for",
    "resolve_min_score", "retrieved_row", "says_abstain", "to_passages",
]

ABSTAIN = "I don't know"
# all-MiniLM-L6-v2 cosine similarity. Off-topic questions score < 0.11 on
# rag_core/sample_data; on SQuAD 2.0 dev questions 0.35 dropped the gold passage of
# answerable questions before the generator saw it, so the retrieval floor only removes
# the clearly unrelated, and abstention is decided by :func:`confidence`.
DEFAULT_MIN_SCORE = 0.2
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


# What small models put around an answer: a copied passage number ("[2] ..."), a piece of
# the context fence, a preamble ("The answer is:"). Removed before grounding.
_CITATION_MARK = re.compile(r"^\s*(?:\[\d{1,3}\]\s*)+")
_FENCE_PIECE = re.compile(r"<{2,}[^<>]*>*|>{2,}")
_PREAMBLE = re.compile(r"^\s*(?:the\s+)?answer(?:\s+to\s+(?:this|the)\s+question)?\s+is\s*:?\s*", re.IGNORECASE)


def strip_filler(text: str) -> str:
    """The answer without a leading passage number, context-fence pieces or an "answer is" preamble.

    >>> strip_filler("[2] The answer is: 1889"), strip_filler("<<<END UNTRUSTED CONTEXT>>"), strip_filler("Paris")
    ('1889', '', 'Paris')
    """
    text = _FENCE_PIECE.sub(" ", text)
    text = _CITATION_MARK.sub("", text)
    return " ".join(_PREAMBLE.sub("", text).split())


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


# Logistic weights of (best sentence cosine, mean token log-probability, grounding score,
# question names missing from the sources, negated question answered from a sentence
# without negation: rag_core.coverage), with all-MiniLM-L6-v2 and SmolLM2-135M. The first
# three were fitted on 195 SQuAD 2.0 dev questions (every 24th, half unanswerable), the
# missing-names term and a rescale on 306 more (`beam-rag eval --dataset squad2 --every 30`
# and `--sample 150`); the negation term and a rescale of the rest (answerable vs not) on
# `--every 7` (620 questions not in those two samples): 5-fold AUC 0.60 -> 0.65. The
# default threshold is the largest that keeps false abstention at or under 0.25 there
# (`--every 7`, all 668: abstention on unanswerable 0.45 at false 0.24; the old weights
# reached 0.45 only at false 0.30).
CONFIDENCE_WEIGHTS = (1.6796, 0.1833, 0.1108, -0.5613, -1.9527)
CONFIDENCE_BIAS = -0.997
DEFAULT_ABSTAIN_BELOW = 0.465


def confidence(similarity: float | None, mean_logprob: float | None, grounding: float,
               missing: int = 0, negated: bool = False) -> float:
    """How likely the answer is right, in [0, 1] (see :data:`CONFIDENCE_WEIGHTS`).

    ``missing``: how many of the question's names the sources never mention
    (:func:`rag_core.coverage.missing_names`); ``negated``: the question is negated and the
    sentence the answer came from is not (:func:`rag_core.coverage.unmatched_negation`).
    Missing signals count as neutral (a custom generator returning plain strings has no
    log-probabilities; a row without selected sentences has no similarity).

    >>> round(confidence(0.8, -0.3, 1.0), 2), round(confidence(0.3, -1.2, 0.0), 2)
    (0.6, 0.33)
    >>> round(confidence(0.8, -0.3, 1.0, missing=1), 2)
    0.46
    """
    sim = 0.6 if similarity is None else similarity
    logprob = -0.75 if mean_logprob is None or not math.isfinite(mean_logprob) else mean_logprob
    w_sim, w_lp, w_ground, w_missing, w_negated = CONFIDENCE_WEIGHTS
    z = (CONFIDENCE_BIAS + w_sim * sim + w_lp * logprob + w_ground * grounding + w_missing * missing
         + w_negated * negated)
    return 1.0 / (1.0 + math.exp(-z))


def confidence_ceiling(similarity: float | None, missing: int = 0) -> float:
    """The most :func:`confidence` any answer can reach before it is generated: a fully
    grounded answer at log-probability 0 (both terms weigh up, and neither goes higher).

    A question whose ceiling is under the threshold is answered :data:`ABSTAIN` without
    the generator: the result is the same, and the generator is most of the cost
    (on SQuAD 2.0 dev samples, 17-22% of questions; 6 of 7 of them unanswerable).

    >>> confidence_ceiling(0.8) > 0.5 > confidence_ceiling(0.8, missing=2)
    True
    """
    return confidence(similarity, 0.0, 1.0, missing)


@dataclass(frozen=True)
class AnswerPolicy:
    """How a generation becomes the answer.

    Args:
        stop_at_sentence: keep the generation's first sentence only.
        ground: snap the answer to the shortest span of the context that carries it.
        min_grounding: a span matching the answer below this (token F1 of its content
            words, 0..1) does not replace the generated text.
        abstain_below: answer :data:`ABSTAIN` when :func:`confidence` is below this
            (0 never abstains on confidence).
        extract: with ``ground``, when the question asks for a date, a number or a name,
            answer with that span of the context (:func:`rag_core.extraction.best_candidate`) rather than
            the generation's.
    """

    stop_at_sentence: bool = True
    ground: bool = True
    min_grounding: float = 0.5
    abstain_below: float = DEFAULT_ABSTAIN_BELOW
    extract: bool = True

    def __post_init__(self) -> None:
        check_number("min_grounding", self.min_grounding, minimum=0.0, maximum=1.0)
        check_number("abstain_below", self.abstain_below, minimum=0.0, maximum=1.0)


def finish_answer(row: AnswerRow, generated: str, policy: AnswerPolicy = AnswerPolicy()) -> AnswerRow:
    """The generator's text for ``row`` → the answered row: trimmed, grounded, or abstained.

    ``row.context`` holds the sentences the generator read (:class:`rag_core.context.ContextSentence`,
    offsets into ``row.sources[i].text``); without them whole source texts are used.

    >>> from rag_core.sinks import Source
    >>> row = AnswerRow("q", "When was the tower completed?", None,
    ...                 (Source("t#0", "t", "Tower", 0.9, "The tower was completed in 1889 in Paris."),), "m", "i")
    >>> done = finish_answer(row, "The tower was completed in 1889. It is tall.", AnswerPolicy(abstain_below=0))
    >>> done.answer, done.answer_span, done.sources[0].cited
    ('1889', AnswerSpan(source=0, start=27, end=31), True)
    """
    mean_logprob = getattr(generated, "mean_logprob", None)
    missing = missing_names(row.question, [s.text or "" for s in row.sources])
    text = normalize_answer(str(generated))
    text = strip_filler(text) or ABSTAIN if text != ABSTAIN else text
    if text == ABSTAIN:
        return replace(row, answer=ABSTAIN, answer_generated=ABSTAIN,
                       confidence=round(confidence(row.retrieval_similarity, mean_logprob, 0.0, missing), 4))
    trimmed = trim_answer(text, stop_at_sentence=policy.stop_at_sentence) or text
    if row.context:
        pieces = [(c.source, c.start, c.text) for c in row.context]
    else:
        pieces = [(i, 0, s.text or "") for i, s in enumerate(row.sources)]
    texts = [p[2] for p in pieces]
    answer, span, grounding, evidence = trimmed, None, 0.0, texts
    if policy.ground:
        found = snap_to_span(trimmed, texts, row.question)
        if found is not None:
            grounding = found.score
            if found.score >= policy.min_grounding:
                source, offset, _ = pieces[found.passage_index]
                answer, span = found.text, AnswerSpan(source, offset + found.start, offset + found.end)
                evidence = [texts[found.passage_index]]
    typed = best_candidate(row.question, texts, trimmed) if policy.ground and policy.extract else None
    if typed is not None:
        source, offset, _ = pieces[typed.sentence]
        answer, span = typed.text, AnswerSpan(source, offset + typed.start, offset + typed.end)
        evidence = [texts[typed.sentence]]
    negated = unmatched_negation(row.question, evidence)  # against the sentence the answer came from
    score = confidence(row.retrieval_similarity, mean_logprob, grounding, missing, negated)
    if score < policy.abstain_below:
        answer, span = ABSTAIN, None
    sources = tuple(replace(s, cited=span is not None and i == span.source) for i, s in enumerate(row.sources))
    return replace(row, answer=answer, answer_generated=trimmed, answer_span=span, sources=sources,
                   confidence=round(score, 4))


def settled_before_generation(row: AnswerRow, policy: AnswerPolicy | None) -> AnswerRow | None:
    """``row`` (its prompt built) answered :data:`ABSTAIN` when even the best possible
    generation would be withheld (:func:`confidence_ceiling`), else None: generate."""
    if policy is None or policy.abstain_below <= 0:
        return None
    missing = missing_names(row.question, [s.text or "" for s in row.sources])
    ceiling = confidence_ceiling(row.retrieval_similarity, missing)
    if ceiling >= policy.abstain_below:
        return None
    return replace(row, answer=ABSTAIN, confidence=round(ceiling, 4))


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


def prompt_for(builder: PromptBuilder, row: AnswerRow, model: str | None,
               selector: ContextSelector | None = None) -> tuple[str, AnswerRow]:
    """The prompt for ``row``, and the row keeping only the sources the prompt holds
    (with the selected sentences in ``context`` when a ``selector`` picks them)."""
    passages = to_passages(row.sources)
    if selector is None:
        built = builder.build(row.question, passages)
        used = set(built.passages_used)
        return built.text, replace(row, sources=tuple(s for s in row.sources if s.chunk_id in used), model=model)
    picked = selector.select(row.question, passages)
    built = builder.build(row.question, list(picked.passages))
    kept = set(built.passages_used)
    slots = [k for k, p in enumerate(picked.passages) if p.chunk_id in kept]
    renumber = {old: new for new, old in enumerate(slots)}
    sources = tuple(row.sources[picked.used[k]] for k in slots)
    context = tuple(replace(c, source=renumber[c.source]) for c in picked.sentences if c.source in renumber)
    return built.text, replace(row, sources=sources, model=model, context=context,
                               retrieval_similarity=picked.best_similarity)


_EMBEDDERS: dict[EmbeddingConfig, Any] = {}
_EMBEDDERS_LOCK = threading.Lock()


def _embedder(config: EmbeddingConfig) -> Any:
    """One embedding model per process for context selection (the DoFn threads share it)."""
    with _EMBEDDERS_LOCK:
        if config not in _EMBEDDERS:
            _EMBEDDERS[config] = load_sentence_transformer(config)
        return _EMBEDDERS[config]


def context_selector(config: ContextConfig | None, embedding: EmbeddingConfig | None,
                     tokenizer: Any) -> ContextSelector | None:
    """The selector for ``config`` (None: whole passages) with the index's embedding model."""
    if config is None or not config.selects or embedding is None:
        return None
    model = _embedder(embedding)

    def count(texts: list[str]) -> list[int]:
        if callable(tokenizer) and not hasattr(tokenizer, "encode"):
            return [int(tokenizer(t)) for t in texts]
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    return ContextSelector(config, lambda texts: embed_texts(model, texts, embedding), count)


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

    A question with no passage left, or one whose answer ``policy`` would withhold
    whatever the generator said (:func:`settled_before_generation`), is answered
    ``I don't know`` here (ABSTAINED), without the generator. The generator's tokenizer
    is loaded once per DoFn instance, in ``setup``.
    """

    def __init__(self, generator: GeneratorConfig, prompt: PromptConfig, context: ContextConfig | None = None,
                 embedding: EmbeddingConfig | None = None, policy: AnswerPolicy | None = None):
        self.generator = generator
        self.prompt = prompt
        self.context = context
        self.embedding = embedding
        self.policy = policy
        self._settled = ProgressCounter(QUESTIONS_SETTLED)
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "abstained_before_generation")

    def setup(self) -> None:
        tokenizer = load_tokenizer(_tokenizer_source(self.generator), self.generator.cache_dir)
        self._builder = PromptBuilder(self.prompt, tokenizer)
        self._selector = context_selector(self.context, self.embedding, tokenizer)

    def process(self, row: AnswerRow) -> Iterator[Any]:
        if not row.sources:
            self._settled.inc()
            yield beam.pvalue.TaggedOutput(ABSTAINED, replace(row, answer=ABSTAIN, model=self.generator.label))
            return
        prompt, context = prompt_for(self._builder, row, self.generator.label, self._selector)
        settled = settled_before_generation(context, self.policy)
        if settled is not None:
            self._settled.inc()
            self._skipped.inc()
            yield beam.pvalue.TaggedOutput(ABSTAINED, settled)
            return
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


def join_answer(element: tuple[str, dict[str, list[Any]]], policy: AnswerPolicy = AnswerPolicy()) -> Iterator[Any]:
    """``(id, {context: [row], answer: [PredictionResult], failed: [reason]})`` → the
    finished row (:func:`finish_answer`), or a dead letter (with the question's source)
    if generation failed."""
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
    inference = answers[0].inference
    yield finish_answer(row, inference if isinstance(inference, str) else str(inference or ""), policy)


# --------------------------------------------------------------------------- one question, in-process


def answer_one(question: str, connection: RedisConnection, record: VersionRecord, *, top_k: int = 5,
               retrieval: str = "hybrid", min_score: float | None = None, filter: dict[str, Any] | None = None,
               generator: GeneratorConfig | None = None, prompt: PromptConfig | None = None,
               max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS, context: ContextConfig | None = ContextConfig(),
               policy: AnswerPolicy = AnswerPolicy()) -> tuple[AnswerRow, dict[str, float]]:
    """Answer ``question`` from index version ``record`` with the batch pipeline's parts.

    ``generator`` None is retrieval only (``answer`` None). ``min_score`` is the raw
    ``--min-score`` (see :func:`resolve_min_score`). Returns the row and the time
    each step took (``embed``, ``retrieve``, ``generate``) in milliseconds.
    """
    question = check_question(question, max_question_chars)  # as the batch pipeline cleans its questions
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    embedding = for_index(record.embedding, record.index)
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
    text, row = prompt_for(builder, row, generator.label, context_selector(context, embedding, tokenizer))
    settled = settled_before_generation(row, policy)
    if settled is not None:
        timings["generate"] = (time.perf_counter() - t2) * 1000
        return settled, timings
    answer = generate_batch(load_generator(generator), [text], generator)[0]
    timings["generate"] = (time.perf_counter() - t2) * 1000
    return finish_answer(row, answer, policy), timings
