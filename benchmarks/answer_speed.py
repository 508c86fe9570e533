"""Answers at batch speed: end-to-end questions/s and answer quality of the query
pipeline, the old defaults against the new ones, on the same SQuAD 2.0 dev questions in
one run, plus raw ``generate`` throughput of each generator backend on the same prompts.

    .venv/bin/python benchmarks/answer_speed.py [--every 100] [--data-file FILE] [--skip-pipeline]
        [--configs old_defaults,new_defaults,...]

The knowledge base (all 469 paragraphs) is built once through ``beam-rag ingest`` into
an embedded Redis started for the run; each configuration then runs
``beam-rag eval --dataset squad2 --index <it>`` (the real query pipeline). Prints one
JSON object as its last line. Targets (issue 12): new defaults >= 3x the old defaults'
questions/s; F1 on answerable >= 0.40 (not met with SmolLM2-135M: see the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "datasets" / "squad2-dev" / "squad2_dev_subset.json"
# The query defaults before issue 12: torch fp32, five whole passages, 128 new tokens, min-score 0.35,
# no sentence stop, no confidence abstention, every prompt run whole.
OLD_DEFAULTS = ["--generator-backend", "torch", "--context-tokens", "0", "--max-new-tokens", "128",
                "--min-score", "0.35", "--abstain-below", "0", "--no-prefix-cache"]
CONFIGS = {"old_defaults": OLD_DEFAULTS, "new_defaults": [], "new_defaults_no_prefix_cache": ["--no-prefix-cache"],
           "new_defaults_int8": ["--generator-backend", "torch-int8"]}
KEYS = ("questions_per_s", "f1", "has_answer_f1", "has_answer_exact_match", "no_answer_abstention_rate",
        "false_abstention_rate", "hit@1", "hit@5", "mean_answer_words", "query_s")


def raw_generate(prompts: list[str]) -> dict[str, dict[str, float]]:
    """Prompts/s of ``generate`` alone for each backend (batch 8, the default new tokens, same prompts)."""
    from rag_core.generation import GeneratorBackend, GeneratorConfig, generate_batch, load_generator

    out = {}
    for backend in GeneratorBackend:
        generator = load_generator(GeneratorConfig(backend=backend, large_model=False))
        generate_batch(generator, prompts[:2])  # warm up
        started = time.perf_counter()
        answers = generate_batch(generator, prompts)
        seconds = time.perf_counter() - started
        out[backend.value] = {"prompts_per_s": round(len(prompts) / seconds, 3),
                              "tokens": sum(a.n_tokens for a in answers), "seconds": round(seconds, 1)}
    return out


def sample_prompts(data_file: Path, n: int) -> list[str]:
    """Compact-style prompts over each question's gold paragraph (whole), as a fixed workload."""
    from rag_core.evaluation.squad import load_squad
    from rag_core.generation import load_tokenizer
    from rag_core.prompt import Passage, PromptBuilder, PromptConfig

    data = load_squad(data_file)
    docs = {d.id: d for d in data.paragraphs}
    builder = PromptBuilder(PromptConfig.for_style("compact", 1536), load_tokenizer())
    questions = [q for q in data.questions if not q.is_impossible][::97][:n]
    return [builder.build(q.question, [Passage(q.doc_id + "#0", q.doc_id, docs[q.doc_id].title,
                                               docs[q.doc_id].text, 0.9)]).text for q in questions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--data-file", default=str(DATA))
    parser.add_argument("--every", type=int, default=100, help="every K-th dev question (100: 47 questions)")
    parser.add_argument("--prompts", type=int, default=16, help="prompts for the raw generate measurement")
    parser.add_argument("--skip-pipeline", action="store_true", help="only the raw generate measurement")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated pipeline configurations (old_defaults and new_defaults always run)")
    args = parser.parse_args()

    from pipelines import squad_eval
    from rag_core.store.local_server import LocalRedis

    summary: dict[str, object] = {"every": args.every}
    summary["raw_generate"] = raw_generate(sample_prompts(Path(args.data_file), args.prompts))
    print(json.dumps({"raw_generate": summary["raw_generate"]}), file=sys.stderr, flush=True)
    if not args.skip_pipeline:
        tmp = tempfile.mkdtemp(prefix="beam-rag-answer-speed-")
        server = LocalRedis(require_password=False, data_dir=Path(tmp) / "redis", port=18390 + os.getpid() % 1000)
        server.start()
        try:
            base = ["--dataset", "squad2", "--data-file", args.data_file, "--every", str(args.every),
                    "--redis-url", server.url]
            first = squad_eval.run(base + ["--keep-index", "--output-dir", f"{tmp}/build", "--", *OLD_DEFAULTS])
            runs = {"old_defaults": first}
            wanted = {"new_defaults", *filter(None, args.configs.split(","))}
            for name, flags in CONFIGS.items():
                if name not in wanted:
                    continue
                if name not in runs:
                    runs[name] = squad_eval.run(base + ["--index", str(first["index"]), "--output-dir",
                                                        f"{tmp}/{name}", "--", *flags])
                print(json.dumps({name: {k: runs[name].get(k) for k in KEYS}}), file=sys.stderr, flush=True)
        finally:
            server.stop()
        summary["pipeline"] = {name: {k: run.get(k) for k in KEYS} for name, run in runs.items()}
        old, new = runs["old_defaults"]["questions_per_s"], runs["new_defaults"]["questions_per_s"]
        summary["speedup_new_vs_old"] = round(float(new) / float(old), 2) if old else None  # type: ignore[arg-type]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
