"""Evaluation output: recall curves, the Markdown report and the recall plot.

Pure except :func:`plot_recall_curves`, which writes a PNG with matplotlib's Agg
backend (imported lazily, so importing this module stays cheap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from rag_core.evaluation.metrics import dedupe_ranking, recall_at_k

CURVE_KS = (1, 2, 3, 5, 10, 20, 30, 50, 100)

# Published nDCG@10 on the SciFact test split (300 claims).
SCIFACT_ANCHORS: dict[str, float] = {
    "all-MiniLM-L6-v2 dense (MTEB)": 0.645,
    "BM25 multifield (BEIR)": 0.665,
    "BM25 flat (BEIR/Pyserini)": 0.679,
}


def recall_curve(run: Mapping[str, Sequence[str]], qrels: Mapping[str, set[str]],
                 ks: Sequence[int] = CURVE_KS) -> dict[int, float]:
    """Mean recall@k for each k (documents deduplicated: a document counts at its best chunk).

    >>> recall_curve({"q": ["a", "a", "b"]}, {"q": {"b", "c"}}, ks=(1, 2))
    {1: 0.0, 2: 0.5}
    """
    queries = [q for q, rel in qrels.items() if rel]
    if not queries:
        return {k: 0.0 for k in ks}
    ranked = {q: dedupe_ranking(run.get(q, [])) for q in queries}
    return {k: sum(recall_at_k(ranked[q], qrels[q], k) for q in queries) / len(queries) for k in ks}


def overlap_at_k(run: Mapping[str, Sequence[str]], reference: Mapping[str, Sequence[str]], k: int) -> float:
    """Mean fraction of ``reference``'s top ``k`` that ``run``'s top ``k`` also holds
    (ANN recall against exact search when ``reference`` is a FLAT index's ranking).

    >>> overlap_at_k({"q": ["a", "c"]}, {"q": ["a", "b"]}, 2)
    0.5
    """
    scores = []
    for q, ref in reference.items():
        top = list(ref[:k])
        if top:
            scores.append(len(set(run.get(q, [])[:k]) & set(top)) / len(top))
    return sum(scores) / len(scores) if scores else 0.0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"
    return str(value)


def markdown_report(summary: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]],
                    curves: Mapping[str, Mapping[int, float]], anchors: Mapping[str, float],
                    plot_name: str | None = None) -> str:
    """The report: setup, one metrics row per retrieval mode, the anchors, the recall curves.

    >>> text = markdown_report({"dataset": "scifact"}, {"dense": {"ndcg@10": 0.6}}, {}, {"x": 0.5})
    >>> "| dense | 0.600 |" in text and "| x | 0.500 |" in text
    True
    """
    lines = [f"# Retrieval evaluation: {summary.get('dataset', '?')} ({summary.get('split', '?')} split)", ""]
    for key, value in summary.items():
        if value is not None:
            lines.append(f"- **{key}**: {_fmt(value)}")
    columns = ["ndcg@10", "recall@10", "recall@100", "mrr@10", "queries_per_s"]
    lines += ["", "## Metrics", "", "| retrieval | " + " | ".join(columns) + " |",
              "| --- | " + " | ".join("---:" for _ in columns) + " |"]
    for mode, metrics in results.items():
        lines.append(f"| {mode} | " + " | ".join(_fmt(metrics.get(c, "")) for c in columns) + " |")
    if anchors:
        lines += ["", "## Published anchors (nDCG@10, test split)", "", "| system | ndcg@10 |", "| --- | ---: |"]
        lines += [f"| {name} | {value:.3f} |" for name, value in anchors.items()]
    if curves:
        ks = sorted({k for curve in curves.values() for k in curve})
        lines += ["", "## Recall@k", "", "| retrieval | " + " | ".join(f"@{k}" for k in ks) + " |",
                  "| --- | " + " | ".join("---:" for _ in ks) + " |"]
        for mode, curve in curves.items():
            lines.append(f"| {mode} | " + " | ".join(_fmt(curve.get(k, "")) for k in ks) + " |")
    if plot_name:
        lines += ["", f"![recall@k]({plot_name})"]
    return "\n".join(lines) + "\n"


def plot_recall_curves(curves: Mapping[str, Mapping[int, float]], path: str | Path, title: str) -> Path:
    """Recall@k curves, one line per retrieval mode, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    try:
        ks: list[int] = sorted({k for curve in curves.values() for k in curve})
        for mode, curve in curves.items():
            xs = sorted(curve)
            ax.plot(xs, [curve[k] for k in xs], marker="o", label=mode)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.set_xlabel("k (documents)")
        ax.set_ylabel("recall@k")
        ax.set_ylim(0, 1)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title)
        ax.legend(loc="lower right")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
