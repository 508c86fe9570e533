"""``beam-rag ask``: one question answered in-process, with no pipeline start-up.

The same parts as ``beam-rag query`` (:func:`rag_core.answers.answer_one`: the
index's embedding model, the Redis search handler, the prompt builder, the
generator), called directly — for development and smoke checks, so what ``ask``
answers is what a batch would.
"""

from __future__ import annotations

from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import resolve_connection
from rag_core.answers import answer_one
from rag_core.generation import DEFAULT_GENERATOR, GeneratorConfig
from rag_core.prompt import PromptConfig, PromptStyle
from rag_core.questions import check_question
from rag_core.store.catalog import IndexCatalog
from rag_core.store.schema import validate_index_name


def ask(question: str, index: str, *, redis_url: str | None = None, top_k: int = 5, retrieval: str = "dense",
        generator: str = DEFAULT_GENERATOR, max_new_tokens: int = 48, min_score: float | None = None,
        prompt_style: PromptStyle | str = PromptStyle.COMPACT, max_prompt_tokens: int = 1536,
        filter: dict[str, Any] | None = None, retrieval_only: bool = False) -> dict[str, Any]:
    """Answer ``question`` from knowledge base ``index``; returns the ``query`` output row
    plus ``timings_ms``. ``min_score`` is ``--min-score`` as ``query`` reads it (None:
    the default threshold, ``-1``: none)."""
    alias = validate_index_name(index)
    question = check_question(question)  # before reaching Redis
    connection = resolve_connection(PipelineOptions(["--redis-url", redis_url] if redis_url else []))
    connection.check()
    client = connection.client()
    try:
        record = IndexCatalog(client, alias).current()
    finally:
        client.close()
    config = None if retrieval_only else GeneratorConfig(model=generator, max_new_tokens=max_new_tokens,
                                                         large_model=False)
    row, timings = answer_one(question, connection, record, top_k=top_k, retrieval=retrieval, min_score=min_score,
                              filter=filter, generator=config,
                              prompt=PromptConfig.for_style(prompt_style, max_prompt_tokens))
    return dict(row.to_dict(), timings_ms=timings)


def format_answer(result: dict[str, Any]) -> str:
    """Human-readable answer with ranked sources, for the terminal."""
    answer = result["answer"] if result["answer"] is not None else "(retrieval only)"
    lines = [f"Q: {result['question']}", f"A: {answer}", f"Sources ({result['index']}):"]
    for rank, s in enumerate(result["sources"], 1):
        lines.append(f"  {rank}. [{s['score']:.3f}] {s['title'] or s['doc_id']}  ({s['chunk_id']})")
    if not result["sources"]:
        lines.append("  (no passage scored above the threshold)")
    return "\n".join(lines)
