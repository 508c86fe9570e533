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
from rag_core.answers import ABSTAIN, answer_one
from rag_core.generation import DEFAULT_GENERATOR, DEFAULT_MAX_NEW_TOKENS, GeneratorConfig
from rag_core.prompt import PromptConfig, PromptStyle
from rag_core.questions import check_question
from rag_core.store.catalog import IndexCatalog
from rag_core.store.schema import validate_index_name


def ask(question: str, index: str, *, redis_url: str | None = None, top_k: int = 5, retrieval: str = "hybrid",
        generator: str = DEFAULT_GENERATOR, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, min_score: float | None = None,
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


def answer_lines(row: dict[str, Any]) -> list[str]:
    """An answer row for a person: the answer sentence with its citation, the verifiable
    quote, and the sources (the cited one marked).

    >>> row = {"answer": "6390", "answer_generated": "It listens on port 6390.", "answer_span": {"source": 0},
    ...        "sources": [{"title": "Embedded Redis", "doc_id": "r", "score": 0.61, "cited": True}]}
    >>> print("\\n".join(answer_lines(row)))
       Answer:  It listens on port 6390. [1]
       Quote:   "6390" [1]
       Sources: [1] Embedded Redis  (score 0.61, cited)
    """
    span = row.get("answer_span")
    cite = f" [{span['source'] + 1}]" if span else ""
    if row.get("answer") is None:
        lines = ["   Answer:  (retrieval only)"]
    elif row["answer"] == ABSTAIN or not row.get("answer_generated"):
        lines = [f"   Answer:  {' '.join(str(row['answer']).split())}"]
    else:
        lines = [f"   Answer:  {' '.join(row['answer_generated'].split())}{cite}"]
        if span:
            lines.append(f"   Quote:   \"{row['answer']}\"{cite}")
    if not row["sources"]:
        lines.append("   Sources: none similar enough to the question")
    for rank, source in enumerate(row["sources"], 1):
        label = "   Sources: " if rank == 1 else " " * 12
        cited = ", cited" if source.get("cited") else ""
        lines.append(f"{label}[{rank}] {source['title'] or source['doc_id']}  (score {source['score']:.2f}{cited})")
    return lines


def format_answer(result: dict[str, Any]) -> str:
    """Human-readable answer with ranked sources, for the terminal."""
    return "\n".join([f"Q: {result['question']}", *answer_lines(result), f"   Index: {result['index']}"])
