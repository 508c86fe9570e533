"""Batch question answering: read → validate → embed → retrieve → prompt → generate → write.

    beam-rag query --input questions.jsonl --output answers.jsonl --index docs \\
        [--top-k 5] [--retrieval dense|hybrid] [--generator smollm2] [--redis-url URL] [--retrieval-only]
        [Beam flags]
    python -m pipelines.query --input ... --output ... --index ...

Input: JSONL (``{"id", "question", "filter"?}`` per line) or a text file with one
question per line (the id is the line number, or ``file:line`` when the pattern
matches several files). Local or any Beam filesystem (``gs://``).

Output: one row per answered question, ``{"id", "question", "answer", "sources",
"model", "index"}``, as JSONL (default, one file unless ``--num-shards``), CSV,
Parquet or BigQuery (``--output`` is then the table spec). Every question that is
not answered is a dead letter (``--dead-letter``, default ``<output>.dead-letter.jsonl``)
with its source, id, reason and stage, so ``questions read = answered +
dead-lettered``; the JSON summary printed last says whether that holds.

Abstention (:mod:`rag_core.answers`): passages scoring below ``--min-score`` are
dropped, a question left with none is answered ``I don't know`` without the
generator, and an answer that says it does not know is cut there. The default
``--prompt-style compact`` is a short instruction small models follow; ``full`` uses
:mod:`rag_core.prompt`'s longer default. Decoding is greedy.

The question embedding uses the model the index was built with, read from the
index's catalog record; asking for another (``--embedding-model``,
``--embedding-backend``) is refused with ``ModelMismatchError``. The whole run
answers from the version the alias served when it started (``index`` in each row).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.enrichment import Enrichment

from pipelines.command import PipelineCommand, read_metrics
from pipelines.progress import Track, count_records, live
from pipelines.options import CommonOptions, EmbeddingOptions, QueryOptions, RedisOptions, resolve_connection
from rag_core.answers import (ABSTAINED, ANSWER, CONTEXT, FAILED, AnswerPolicy, BuildPromptFn, CheckRetrievalFn,
                              failed_batch_to_keyed_reasons, join_answer, resolve_min_score, retrieved_row)
from rag_core.dedupe import DeduplicateById, Keep
from rag_core.embeddings import EmbeddingConfig, embedding_transform, for_index
from rag_core.enrichment import RedisVectorSearchHandler, VectorSearchParameters, join_hits, search_parameters
from rag_core.errors import ConfigError
from rag_core.filters import field_kinds
from rag_core.generation import METRICS_NAMESPACE as GENERATION_NAMESPACE
from rag_core.generation import GeneratorConfig, GeneratorModelHandler, KeyedGeneratorHandler
from rag_core.context import ContextConfig
from rag_core.progress import QUESTIONS_SETTLED
from rag_core.prompt import PromptConfig, PromptStyle
from rag_core.questions import ReadQuestions, duplicate_question, to_chunk
from rag_core.sinks import DEAD_LETTER, WriteAnswers, WriteDeadLetters, count_rows, home_dead_letter_path, timestamp
from rag_core.store.catalog import IndexCatalog, VersionRecord
from rag_core.store.connection import RedisConnection
from rag_core.store.schema import FieldKind, validate_index_name
from rag_core.validation import check_positive_int

GeneratorHandler = ModelHandler[str, PredictionResult, Any]


@dataclass(frozen=True)
class QueryPlan:
    """Everything the driver decided before the pipeline runs."""

    connection: RedisConnection
    record: VersionRecord  # the index version every question is answered from
    kinds: dict[str, FieldKind]
    embedding: EmbeddingConfig
    search: RedisVectorSearchHandler  # cheap and picklable: it connects in __enter__
    generator: GeneratorConfig | None  # None with --retrieval-only
    prompt: PromptConfig | None  # None with --retrieval-only
    dead_letter_path: str
    many_files: bool
    context: ContextConfig | None = None  # which sentences the generator reads; None with --retrieval-only
    policy: AnswerPolicy | None = None  # how a generation becomes the answer


def _given(argv: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def plan_query(options: PipelineOptions, argv: Sequence[str] = ()) -> QueryPlan:
    """Validate flags, reach Redis, pin the index version and its embedding model.

    ``argv`` tells which embedding flags were given explicitly (their defaults are
    not requests for a model or backend).
    """
    from apache_beam.io.filesystems import FileSystems

    common = options.view_as(CommonOptions)
    opts = options.view_as(QueryOptions)
    for flag, value in (("--input", common.input), ("--index", common.index), ("--output", opts.output)):
        if not value:
            raise ConfigError(f"{flag} is required")
    alias = validate_index_name(common.index)
    check_positive_int("--max-question-chars", opts.max_question_chars)
    check_positive_int("--retrieval-batch-size", opts.retrieval_batch_size)
    matched = FileSystems.match([common.input])[0].metadata_list
    if not matched:
        raise ConfigError(f"No files match --input {common.input!r}")
    WriteAnswers(opts.output, opts.output_format, opts.num_shards)  # validates format and shards
    connection = resolve_connection(options)
    connection.check()  # fails in seconds, naming the URL, if Redis is down or refuses us
    client = connection.client()
    try:
        record = IndexCatalog(client, alias).current()
    finally:
        client.close()
    eopts = options.view_as(EmbeddingOptions)
    embedding = for_index(
        record.embedding, record.index, eopts.embedding_model,
        eopts.embedding_backend if _given(argv, "--embedding-backend") else None, eopts.embedding_batch_size)
    search = RedisVectorSearchHandler(connection, search_parameters(opts.retrieval, VectorSearchParameters(
        index=record.index, top_k=opts.top_k, score_threshold=resolve_min_score(opts.min_score, opts.retrieval_only),
        ef_runtime=opts.search_ef_runtime, return_text=True,
        expected_embedding={"model": record.embedding.get("model"), "dimension": record.embedding.get("dimension")})),
        on_unavailable="report", max_batch_size=opts.retrieval_batch_size)
    generator = prompt = context = policy = None
    if not opts.retrieval_only:
        compact = PromptStyle(opts.prompt_style) is PromptStyle.COMPACT
        generator = GeneratorConfig(
            model=opts.generator, device=opts.device, dtype=opts.dtype, max_new_tokens=opts.max_new_tokens,
            large_model=opts.large_model, model_copies=opts.model_copies,
            batch_size=opts.generation_batch_size, model_state_dict_path=opts.model_state_dict_path,
            model_name=opts.model_name, backend=opts.generator_backend, stop_at_sentence=compact,
            prefix_cache=opts.prefix_cache)
        prompt = PromptConfig.for_style(opts.prompt_style, opts.max_prompt_tokens, opts.prompt_template)
        context = ContextConfig(max_tokens=opts.context_tokens, per_passage=opts.sentences_per_passage)
        policy = AnswerPolicy(stop_at_sentence=compact, abstain_below=opts.abstain_below,
                              extract=opts.typed_answers)
    if common.dead_letter:
        dead_letter = common.dead_letter
    elif opts.output_format == "bigquery":  # no file next to a table: under $BEAM_RAG_HOME
        dead_letter = home_dead_letter_path(f"query-{alias}-{timestamp()}")
    else:
        dead_letter = f"{opts.output}.dead-letter.jsonl"
    return QueryPlan(connection, record, field_kinds(record.spec.get("metadata_fields")), embedding, search,
                     generator, prompt, dead_letter, len(matched) > 1, context, policy)


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions, plan: QueryPlan,
                   generator_handler: GeneratorHandler | None = None) -> None:
    """Add the query steps to ``pipeline``.

    ``generator_handler`` replaces the ``GeneratorModelHandler`` built from the plan
    (any handler of prompt strings to ``PredictionResult``s with answer strings).
    """
    common = options.view_as(CommonOptions)
    opts = options.view_as(QueryOptions)
    read = pipeline | "ReadQuestions" >> ReadQuestions(common.input, opts.input_format, opts.max_question_chars,
                                                       plan.kinds, plan.many_files)
    unique = read.questions | "FirstPerId" >> DeduplicateById(Keep.FIRST, duplicate_question)
    retrieved = (unique.unique
                 | "ToChunk" >> beam.Map(to_chunk)
                 | "Embed" >> embedding_transform(plan.embedding)
                 | "Retrieve" >> Enrichment(plan.search, join_fn=join_hits,
                                            timeout=plan.search.worst_case_seconds())
                 | "CheckRetrieval" >> beam.ParDo(CheckRetrievalFn()).with_outputs(DEAD_LETTER, main="found"))
    dead_letters = [read[DEAD_LETTER], unique[DEAD_LETTER], retrieved[DEAD_LETTER]]
    rows = retrieved.found | "ToRow" >> beam.Map(retrieved_row)
    if plan.generator is not None:
        assert plan.prompt is not None
        prompts = rows | "BuildPrompt" >> beam.ParDo(
            BuildPromptFn(plan.generator, plan.prompt, plan.context, plan.embedding, plan.policy)).with_outputs(
            CONTEXT, ABSTAINED, main="prompts")
        handler = KeyedGeneratorHandler(generator_handler or GeneratorModelHandler(plan.generator))
        answers, failed = prompts.prompts | "Generate" >> RunInference(handler).with_exception_handling()
        failures = failed.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_batch_to_keyed_reasons)
        joined = ({CONTEXT: prompts[CONTEXT], ANSWER: answers, FAILED: failures}
                  | "JoinAnswers" >> beam.CoGroupByKey()
                  | "Answer" >> beam.FlatMap(join_answer, plan.policy or AnswerPolicy()).with_outputs(DEAD_LETTER, main="rows"))
        rows = (joined.rows, prompts[ABSTAINED]) | "AllAnswers" >> beam.Flatten()
        dead_letters.append(joined[DEAD_LETTER])
    (rows
     | "CountAnswered" >> count_rows("questions_answered")
     | "WriteAnswers" >> WriteAnswers(opts.output, opts.output_format, opts.num_shards))
    tuple(dead_letters) | "WriteDeadLetters" >> WriteDeadLetters(plan.dead_letter_path, "questions_dead_lettered")


def run(argv: Sequence[str] | None = None, generator_handler: GeneratorHandler | None = None) -> dict[str, Any]:
    """Answer every question of ``--input``; returns the run summary (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options = PipelineOptions(argv)
    plan = plan_query(options, argv)
    common = options.view_as(CommonOptions)
    opts = options.view_as(QueryOptions)
    for path in (plan.dead_letter_path, opts.output if opts.output_format != "bigquery" else ""):
        folder = os.path.dirname(path)
        if path and "://" not in path and folder:
            os.makedirs(folder, exist_ok=True)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options, plan, generator_handler)
    with live(options, Track("beam-rag query", "questions_answered", "questions",
                             total=lambda: count_records(common.input, "jsonl"),
                             also={"dead-lettered": "questions_dead_lettered"}, ahead=QUESTIONS_SETTLED)):
        result = pipeline.run()
        result.wait_until_finish()
    counters = read_metrics(result, also={GENERATION_NAMESPACE: ("tokens_generated",)})
    read = counters.get("questions", 0)
    answered = counters.get("questions_answered", 0)
    dead = counters.get("questions_dead_lettered", 0)
    return {
        "index": plan.record.index,
        "alias": common.index,
        "embedding_model": plan.record.embedding.get("model"),
        "model": plan.generator.label if plan.generator else None,
        "retrieval_only": plan.generator is None,
        "questions_read": read,
        "questions_answered": answered,
        "questions_dead_lettered": dead,
        "tokens_generated": counters.get("tokens_generated", 0),
        "abstained_before_generation": counters.get("abstained_before_generation", 0),
        "retrieval_latency_ms": counters.get("retrieval_latency_ms"),
        "generation_latency_ms": counters.get("generation_latency_ms"),
        "reconciled": read == answered + dead,
        "output": opts.output,
        "dead_letter": plan.dead_letter_path,
    }


COMMAND = PipelineCommand("beam-rag query", __doc__.split("\n\n", 1)[0],
                          (CommonOptions, QueryOptions, RedisOptions, EmbeddingOptions), run)


if __name__ == "__main__":
    sys.exit(COMMAND.main())
