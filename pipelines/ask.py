"""``beam-rag ask``: one question answered in-process, with no pipeline start-up.

The same parts as ``beam-rag query`` (the index's embedding model, the Redis
search handler, the prompt builder, the generator), called directly — for
development and smoke checks, so what ``ask`` answers is what a batch would.
"""

from __future__ import annotations

import time
from typing import Any

from apache_beam.ml.rag.types import Embedding
from apache_beam.options.pipeline_options import PipelineOptions

from rag_core.embeddings import embed_texts, load_sentence_transformer
from rag_core.enrichment import RedisVectorSearchHandler, VectorSearchParameters, join_hits, search_parameters
from rag_core.generation import DEFAULT_GENERATOR, GeneratorConfig, generate_batch, load_generator, load_tokenizer
from rag_core.prompt import Passage, PromptBuilder
from rag_core.store.catalog import IndexCatalog
from rag_core.store.schema import validate_index_name
from pipelines.options import resolve_connection
from rag_core.documents import clean_text
from pipelines.query import (
    ABSTAIN, DEFAULT_MAX_QUESTION_CHARS, DEFAULT_MIN_SCORE, Question, index_embedding, normalize_answer, prompt_config, public_row,
    retrieved_row, to_chunk,
)


def ask(question: str, index: str, *, redis_url: str | None = None, top_k: int = 5, retrieval: str = "dense",
        generator: str = DEFAULT_GENERATOR, max_new_tokens: int = 128, min_score: float | None = DEFAULT_MIN_SCORE,
        prompt_style: str = "compact", max_prompt_tokens: int = 1536, filter: dict[str, Any] | None = None,
        retrieval_only: bool = False) -> dict[str, Any]:
    """Answer ``question`` from knowledge base ``index``; returns the ``query`` output row
    plus ``timings_ms``."""
    from rag_core.errors import ConfigError

    alias = validate_index_name(index)
    question = clean_text(question or "").strip()  # as `query` cleans its questions
    if not question:
        raise ConfigError("The question is empty")
    if len(question) > DEFAULT_MAX_QUESTION_CHARS:
        raise ConfigError(f"The question is longer than {DEFAULT_MAX_QUESTION_CHARS} characters "
                          f"({len(question)}), the limit `beam-rag query` applies too")
    connection = resolve_connection(PipelineOptions(["--redis-url", redis_url] if redis_url else []))
    connection.check()
    client = connection.client()
    try:
        record = IndexCatalog(client, alias).current()
    finally:
        client.close()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    embedding = index_embedding(record.embedding, record.index)
    vector = embed_texts(load_sentence_transformer(embedding), [question], embedding)[0]
    timings["embed"] = (time.perf_counter() - t0) * 1000
    chunk = to_chunk(Question(id="ask", question=question.strip(), source="ask", filter=filter))
    chunk.embedding = Embedding(dense_embedding=[float(x) for x in vector])
    search = search_parameters(retrieval, VectorSearchParameters(
        index=record.index, top_k=top_k, score_threshold=None if retrieval_only else min_score,
        expected_embedding={"model": record.embedding.get("model"), "dimension": record.embedding.get("dimension")}))
    t1 = time.perf_counter()
    with RedisVectorSearchHandler(connection, search) as handler:
        request, response = handler(chunk)
    row = retrieved_row(join_hits(request, response))
    timings["retrieve"] = (time.perf_counter() - t1) * 1000
    if retrieval_only:
        return dict(public_row(row), timings_ms=timings)
    config = GeneratorConfig(model=generator, max_new_tokens=max_new_tokens, large_model=False)
    if not row["sources"]:
        return dict(public_row(dict(row, answer=ABSTAIN, model=config.label)), timings_ms=timings)
    t2 = time.perf_counter()
    builder = PromptBuilder(prompt_config(prompt_style, max_prompt_tokens), load_tokenizer(config.model))
    passages = [Passage(s["chunk_id"], s["doc_id"], s["title"] or "", s["text"] or "", float(s["score"]),
                        int(s.get("chunk_index") or 0)) for s in row["sources"]]
    built = builder.build(row["question"], passages)
    answer = generate_batch(load_generator(config), [built.text], config)[0]
    timings["generate"] = (time.perf_counter() - t2) * 1000
    used = set(built.passages_used)
    row = dict(row, answer=normalize_answer(answer), model=config.label,
               sources=[s for s in row["sources"] if s["chunk_id"] in used])
    return dict(public_row(row), timings_ms=timings)


def format_answer(result: dict[str, Any]) -> str:
    """Human-readable answer with ranked sources, for the terminal."""
    lines = [f"Q: {result['question']}", f"A: {result['answer'] if result['answer'] is not None else '(retrieval only)'}",
             f"Sources ({result['index']}):"]
    for rank, s in enumerate(result["sources"], 1):
        lines.append(f"  {rank}. [{s['score']:.3f}] {s['title'] or s['doc_id']}  ({s['chunk_id']})")
    if not result["sources"]:
        lines.append("  (no passage scored above the threshold)")
    return "\n".join(lines)
