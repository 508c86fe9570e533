"""Question answering measured end to end on SQuAD 2.0, through the real pipelines.

    beam-rag eval --dataset squad2 --data-file squad2_dev_subset.json [--every K | --sample N [--seed S]]
        [--article TITLE ...] [--articles-only] [--index NAME | --keep-index] [--output-dir DIR]
        [--redis-url URL] [build flags] [-- beam-rag query flags]

1. Select: every K-th question in file order (default ``--every 10``) or a fixed seeded
   sample, optionally of some articles only (:mod:`rag_core.evaluation.squad`).
2. Build: the paragraphs of the whole set (so retrieval has distractors; only the
   sampled questions' articles with ``--articles-only``) are indexed by the real build
   pipeline (:func:`pipelines.ingest.run`) into ``squad2-eval-<stamp>``, dropped afterwards
   unless ``--keep-index``. ``--index NAME`` answers from an existing index instead.
3. Answer: the real query pipeline (:func:`pipelines.query.run`) with today's defaults
   and whatever flags follow ``--`` (``-- --retrieval hybrid --top-k 3``).
4. Score: SQuAD 2.0 EM/F1, abstention rates and hit@k of the sources the generator saw.

Writes ``report.md``, ``runs.json`` (the summary and one row per question), ``squad2.png``
and the raw ``answers.jsonl`` to ``--output-dir`` (default ``$BEAM_RAG_HOME/eval/squad2-<stamp>``)
and returns the summary, which ``beam-rag eval`` prints as its last stdout line.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipelines.command import progress
from rag_core.errors import ConfigError
from rag_core.store.catalog import drop_knowledge_base

DATASET = "squad2"
PROG = "beam-rag eval"
DEFAULT_EVERY = 10
PLOT_NAME = "squad2.png"
# Flags this eval sets on the query pipeline itself (Redis: the build and the questions must
# meet the same server): not accepted after "--".
_OWN_QUERY_FLAGS = ("--input", "--output", "--index", "--dead-letter", "--output-format", "--num-shards",
                    "--input-format", "--redis-url", "--redis_url")
# Published SQuAD 2.0 dev F1 of readers given the gold paragraph (Rajpurkar, Jia and Liang, 2018).
ANCHORS: dict[str, float] = {
    "strongest baseline in the SQuAD 2.0 paper (gold paragraph)": 0.663,
    "human (gold paragraph)": 0.895,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beam-rag eval", description="Question answering measured end to end on SQuAD 2.0",
        epilog="Flags after a lone '--' go to beam-rag query, e.g. -- --retrieval hybrid --top-k 3.")
    p.add_argument("--dataset", required=True, choices=[DATASET])
    p.add_argument("--data-file", dest="data_file", required=True, help="SQuAD v2.0 JSON file")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--every", type=int, default=None,
                      help=f"every K-th question in file order (default {DEFAULT_EVERY})")
    pick.add_argument("--sample", type=int, default=None, help="N questions drawn with --seed, in file order")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample")
    p.add_argument("--article", dest="articles", action="append", default=None, metavar="TITLE",
                   help="only questions of this article (repeatable; 'Steam_engine' or 'Steam engine')")
    p.add_argument("--articles-only", dest="articles_only", action="store_true",
                   help="index only the paragraphs of the chosen questions' articles (default: all paragraphs)")
    p.add_argument("--index", default=None,
                   help="answer from this existing index (built from the same file) instead of building one")
    p.add_argument("--keep-index", dest="keep_index", action="store_true",
                   help="keep the index this run builds (its name is in the output)")
    p.add_argument("--output-dir", dest="output_dir", default=None,
                   help="where report.md, runs.json, the plot and answers.jsonl go "
                        "(default: $BEAM_RAG_HOME/eval/squad2-<stamp>)")
    p.add_argument("--redis-url", dest="redis_url", default=None)
    # Forwarded to the build (pipelines.ingest); the embedding flags to the query pipeline too.
    p.add_argument("--index-type", dest="index_type", default="flat", choices=["flat", "hnsw"])
    p.add_argument("--chunk-tokens", dest="chunk_tokens", type=int, default=None)
    p.add_argument("--chunk-overlap", dest="chunk_overlap", type=int, default=None)
    p.add_argument("--max-chunks-per-doc", dest="max_chunks_per_doc", type=int, default=None)
    p.add_argument("--embedding-model", dest="embedding_model", default=None)
    p.add_argument("--embedding-backend", dest="embedding_backend", default=None,
                   choices=["torch", "onnx", "onnx-int8"])
    p.add_argument("--embedding-batch-size", dest="embedding_batch_size", type=int, default=None)
    return p


def requested(argv: Sequence[str]) -> bool:
    """Whether a ``beam-rag eval`` command line asks for ``--dataset squad2``.

    >>> requested(["--dataset", "squad2", "--every", "5"]), requested(["--dataset=scifact"])
    (True, False)
    """
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--dataset")
    known, _ = peek.parse_known_args(split_query_flags(argv)[0])
    return bool(known.dataset == DATASET)


def split_query_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(own flags, query flags)``: the query pipeline's come after the first lone ``--``.

    >>> split_query_flags(["--every", "5", "--", "--top-k", "3"])
    (['--every', '5'], ['--top-k', '3'])
    """
    args = list(argv)
    if "--" not in args:
        return args, []
    cut = args.index("--")
    return args[:cut], args[cut + 1:]


def check_query_flags(flags: Sequence[str]) -> list[str]:
    """The flags after ``--``, refusing those this eval sets itself."""
    for flag in flags:
        name = flag.split("=", 1)[0]
        if name in _OWN_QUERY_FLAGS:
            raise ConfigError(f"{name} is set by beam-rag eval --dataset squad2: drop it after '--' "
                              "(give --redis-url before '--')")
    return list(flags)


def build_flags(args: argparse.Namespace) -> list[str]:
    """The flags forwarded to ``pipelines.ingest``."""
    return ["--index-type", args.index_type, *_flags(args, ("chunk_tokens", "chunk_overlap", "max_chunks_per_doc")),
            *embedding_flags(args, with_model=True)]


def embedding_flags(args: argparse.Namespace, with_model: bool) -> list[str]:
    """``--embedding-*`` as given; the query pipeline checks them against the index's model."""
    names = ("embedding_model",) * with_model + ("embedding_backend", "embedding_batch_size")
    return _flags(args, names)


def _flags(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        value = getattr(args, name)
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    return out


def select_questions(data: Any, args: argparse.Namespace) -> list[Any]:
    """The questions to ask: of ``--article`` if given, then ``--every`` / ``--sample``."""
    from rag_core.evaluation.squad import sample

    questions = list(data.questions)
    if args.articles:
        known = {p.article for p in data.paragraphs}
        wanted = {a.replace(" ", "_") for a in args.articles}
        unknown = sorted(wanted - known)
        if unknown:
            raise ConfigError(f"--article {', '.join(unknown)} is not in the file; known: {', '.join(sorted(known))}")
        questions = [q for q in questions if q.article in wanted]
    every = args.every if args.every is not None or args.sample is not None else DEFAULT_EVERY
    chosen = sample(questions, n=args.sample, every=every, seed=args.seed)
    if not chosen:
        raise ConfigError("no question left to ask: check --data-file and --article")
    return chosen


def _write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def read_answers(path: Path) -> list[dict[str, Any]]:
    """The query pipeline's JSONL rows (none if it wrote no file)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``beam-rag eval --dataset squad2``: returns the summary (see the module docstring)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines import ingest, query
    from pipelines.options import resolve_connection
    from rag_core.evaluation.squad import load_squad, score_rows, summarize
    from rag_core.paths import beam_rag_home

    own, query_extra = split_query_flags(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    query_extra = check_query_flags(query_extra)
    started = time.perf_counter()
    data = load_squad(args.data_file)
    questions = select_questions(data, args)
    articles = sorted({q.article for q in questions})
    paragraphs = data.paragraphs_of(articles) if args.articles_only else list(data.paragraphs)
    stamp = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    out_dir = Path(args.output_dir) if args.output_dir else beam_rag_home() / "eval" / f"squad2-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    redis = ["--redis-url", args.redis_url] if args.redis_url else []
    connection = resolve_connection(PipelineOptions(list(redis)))
    connection.check()
    alias = args.index or f"squad2-eval-{stamp}"
    answers = out_dir / "answers.jsonl"
    selection = f"sample {args.sample} (seed {args.seed})" if args.sample is not None else \
        f"every {args.every or DEFAULT_EVERY}"
    summary: dict[str, Any] = {
        "dataset": DATASET, "data_file": str(args.data_file),
        "selection": selection + (f" of {', '.join(articles)}" if args.articles else ""),
        "query_flags": " ".join(query_extra) or None,
    }
    built = False
    with tempfile.TemporaryDirectory(prefix="beam-rag-squad-") as tmp:
        work = Path(tmp)
        try:
            if args.index is None:
                progress(PROG, f"indexing {len(paragraphs)} paragraphs of {len(articles) if args.articles_only else 'all'} "
                          f"articles into {alias} ({args.index_type})")
                corpus = _write_jsonl(work / "paragraphs.jsonl", [p.as_record() for p in paragraphs])
                t0 = time.perf_counter()
                build = ingest.run(["--input", str(corpus), "--index", alias, *redis,
                                    "--dead-letter", str(out_dir / "ingest-dead-letters.jsonl"), *build_flags(args)])
                built = True
                summary.update(build_s=round(time.perf_counter() - t0, 1), documents_indexed=build["documents_indexed"],
                               chunks=build["chunks_written"])
            asked = _write_jsonl(work / "questions.jsonl", [q.as_record() for q in questions])
            progress(PROG, f"answering {len(questions)} questions from {alias}"
                      + (f" ({' '.join(query_extra)})" if query_extra else ""))
            t0 = time.perf_counter()
            answered = query.run(["--input", str(asked), "--output", str(answers), "--index", alias, *redis,
                                  *embedding_flags(args, with_model=False), *query_extra])
            query_s = time.perf_counter() - t0
        finally:
            if built and not args.keep_index:
                drop_knowledge_base(connection, alias)
    scores = score_rows(questions, read_answers(answers))
    metrics = summarize(scores)
    summary.update({
        "index": alias if args.keep_index or args.index else None, "model": answered.get("model"),
        "embedding_model": answered.get("embedding_model"),
        "paragraphs": len(paragraphs) if built else None,
        "articles": len({p.article for p in paragraphs}) if built else None,
        "query_s": round(query_s, 1), "questions_per_s": round(len(questions) / query_s, 3) if query_s else None,
        "tokens_generated": answered.get("tokens_generated"),
    })
    summary.update(metrics)
    plot = plot_scores(metrics, [s.f1 for s in scores if s.question.answerable and s.returned and not s.abstained],
                       out_dir / PLOT_NAME, f"SQuAD 2.0: {metrics['questions']} questions")
    report = out_dir / "report.md"
    summary.update({"report": str(report), "plot": str(plot), "runs": str(out_dir / "runs.json"),
                    "answers": str(answers), "dead_letter": answered.get("dead_letter"), "seconds": round(time.perf_counter() - started, 1)})
    report.write_text(markdown_report(summary, ANCHORS, plot.name), encoding="utf-8")
    (out_dir / "runs.json").write_text(
        json.dumps({"summary": summary, "questions": [s.as_row() for s in scores]}, ensure_ascii=False, indent=1),
        encoding="utf-8")
    return summary


# --------------------------------------------------------------------------- report

# The report's metric table: (summary key, what it measures).
REPORT_METRICS = (
    ("f1", "overall F1, SQuAD 2.0 style (unanswerable: 1 when abstained)"),
    ("exact_match", "overall exact match, SQuAD 2.0 style"),
    ("has_answer_f1", "F1 on answerable questions (false abstention: 0)"),
    ("has_answer_exact_match", "exact match on answerable questions"),
    ("attempted_f1", "F1 on the answerable questions it answered"),
    ("attempted_exact_match", "exact match on the answerable questions it answered"),
    ("no_answer_abstention_rate", "abstained on unanswerable questions (higher is better)"),
    ("false_abstention_rate", "abstained on answerable questions (lower is better)"),
    ("hit@1", "gold paragraph is the first source (answerable)"),
    ("hit@5", "gold paragraph among the first 5 sources (answerable)"),
    ("answer_contains_gold", "attempted answers holding a gold answer verbatim"),
    ("mean_answer_words", "words per answer (abstentions excluded)"),
)
_COUNTS = ("questions", "answerable", "unanswerable", "answered", "dead_lettered", "abstained", "attempted")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_report(summary: Mapping[str, Any], anchors: Mapping[str, float], plot_name: str | None = None) -> str:
    """The report: setup and timing, the metrics, the counts, the published anchors.

    >>> text = markdown_report({"dataset": "squad2", "f1": 0.25, "questions": 4}, {"human": 0.895})
    >>> "| f1 | 0.250 |" in text and "| questions | 4 |" in text and "| human | 0.895 |" in text
    True
    """
    metric_keys = {k for k, _ in REPORT_METRICS} | set(_COUNTS)
    lines = ["# Question answering evaluation: SQuAD 2.0", ""]
    lines += [f"- **{k}**: {_fmt(v)}" for k, v in summary.items() if v is not None and k not in metric_keys]
    lines += ["", "## Answers", "", "| metric | value | what |", "| --- | ---: | --- |"]
    lines += [f"| {k} | {_fmt(summary.get(k))} | {what} |" for k, what in REPORT_METRICS if k in summary]
    lines += ["", "## Counts", "", "| | questions |", "| --- | ---: |"]
    lines += [f"| {k} | {summary[k]} |" for k in _COUNTS if k in summary]
    if anchors:
        lines += ["", "## Published anchors (F1, SQuAD 2.0 dev, reader given the gold paragraph)", "",
                  "| system | f1 |", "| --- | ---: |"]
        lines += [f"| {name} | {value:.3f} |" for name, value in anchors.items()]
    if plot_name:
        lines += ["", f"![scores]({plot_name})"]
    return "\n".join(lines) + "\n"


def plot_scores(metrics: Mapping[str, Any], attempted_f1: Sequence[float], path: Path, title: str) -> Path:
    """Bars of the main rates and a histogram of F1 over attempted answers, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [("F1", "f1"), ("EM", "exact_match"), ("F1 ans.", "has_answer_f1"), ("F1 att.", "attempted_f1"),
            ("abst. unans.", "no_answer_abstention_rate"), ("false abst.", "false_abstention_rate"),
            ("hit@1", "hit@1"), ("hit@5", "hit@5")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100, gridspec_kw={"width_ratios": [3, 2]})
    try:
        values = [float(metrics.get(key) or 0.0) for _, key in bars]
        left.bar([label for label, _ in bars], values, color=["C0"] * 4 + ["C2", "C3"] + ["C1"] * 2)
        for x, value in enumerate(values):
            left.text(x, value + 0.01, f"{value:.2f}", ha="center", fontsize=8)
        left.set_ylim(0, 1.05)
        left.set_ylabel("fraction")
        left.tick_params(axis="x", labelrotation=35, labelsize=8)
        left.set_title(title)
        left.grid(True, axis="y", alpha=0.3)
        right.hist(list(attempted_f1), bins=[i / 10 for i in range(11)], color="C0")
        right.set_xlabel("F1 of an attempted answer")
        right.set_ylabel("questions")
        right.set_title(f"{len(attempted_f1)} attempted answers")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
