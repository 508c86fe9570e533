"""Retrieval metrics as BEIR / MTEB compute them (binary relevance).

Pure functions over ``run`` (query id → ranked doc ids) and ``qrels``
(query id → relevant doc ids); queries without relevant docs are skipped.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def dedupe_ranking(doc_ids: Sequence[str]) -> list[str]:
    """Keep each document's best (first) rank: a document scores as its best chunk.

    >>> dedupe_ranking(["a", "b", "a", "c"])
    ['a', 'b', 'c']
    """
    seen: set[str] = set()
    out = []
    for d in doc_ids:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-relevance nDCG@k.

    >>> round(ndcg_at_k(["x", "a"], {"a"}, 10), 4)
    0.6309
    """
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if d in relevant:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(run: Mapping[str, Sequence[str]], qrels: Mapping[str, set[str]],
             ks: Sequence[int] = (1, 5, 10, 100)) -> dict[str, float]:
    """Mean metrics over the queries in ``qrels`` that have relevant docs.

    A query missing from ``run`` counts as retrieving nothing.

    >>> evaluate({"q": ["a", "b"]}, {"q": {"b"}}, ks=(10,))["mrr@10"]
    0.5
    """
    queries = [q for q, rel in qrels.items() if rel]
    out: dict[str, float] = {}
    if not queries:
        return {"queries": 0}
    for k in ks:
        out[f"ndcg@{k}"] = sum(ndcg_at_k(dedupe_ranking(run.get(q, [])), qrels[q], k) for q in queries) / len(queries)
        out[f"recall@{k}"] = sum(recall_at_k(dedupe_ranking(run.get(q, [])), qrels[q], k) for q in queries) / len(queries)
    out["mrr@10"] = sum(mrr_at_k(dedupe_ranking(run.get(q, [])), qrels[q], 10) for q in queries) / len(queries)
    out["queries"] = len(queries)
    return out
