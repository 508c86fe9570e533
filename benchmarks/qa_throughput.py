"""Batch question answering: end-to-end questions/s versus the raw generation
ceiling, retrieval batched versus unbatched, and memory with ``large_model``
on and off under two worker processes.

All on the bundled sample corpus and the packaged SmolLM2-135M-Instruct, on an
embedded Redis started for the run. Prints one JSON object as its last line.

    .venv/bin/python benchmarks/qa_throughput.py [--questions 48] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _memory import run_measured  # noqa: E402

SAMPLE = ROOT / "rag_core" / "sample_data"


def write_questions(path: Path, n: int) -> list[dict[str, str]]:
    base = [json.loads(line) for line in (SAMPLE / "questions.jsonl").read_text().splitlines() if line.strip()]
    rows = [{"id": f"q{i}", "question": base[i % len(base)]["question"]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def query_argv(questions: Path, output: Path, url: str, *extra: str) -> list[str]:
    return ["--input", str(questions), "--output", str(output), "--index", "bench_qa", "--redis-url", url,
            "--max-new-tokens", "48", "--min-score", "-1", *extra]


def retrieval_ms(url: str, rows: list[dict[str, str]], batch: int) -> float:
    """ms per question for the Enrichment handler, ``batch`` questions per round trip."""
    from apache_beam.ml.rag.types import Embedding

    from rag_core.embeddings import for_index
    from rag_core.questions import Question, to_chunk
    from rag_core.embeddings import embed_texts, load_sentence_transformer
    from rag_core.enrichment import RedisVectorSearchHandler, VectorSearchParameters
    from rag_core.store.catalog import IndexCatalog
    from rag_core.store.connection import RedisConnection

    conn = RedisConnection.from_url(url)
    client = conn.client()
    record = IndexCatalog(client, "bench_qa").current()
    client.close()
    config = for_index(record.embedding, record.index)
    vectors = embed_texts(load_sentence_transformer(config), [r["question"] for r in rows], config)
    chunks = []
    for r, v in zip(rows, vectors):
        c = to_chunk(Question(id=r["id"], question=r["question"], source="bench"))
        c.embedding = Embedding(dense_embedding=[float(x) for x in v])
        chunks.append(c)
    with RedisVectorSearchHandler(conn, VectorSearchParameters(record.index, top_k=5)) as handler:
        handler(chunks[:batch])  # warm up
        t0 = time.perf_counter()
        for start in range(0, len(chunks), batch):
            part = chunks[start:start + batch]
            handler(part if batch > 1 else part[0])
        return (time.perf_counter() - t0) * 1000 / len(chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8, help="generation batch size (pipeline and ceiling)")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    from pipelines import ingest, query
    from pipelines.ask import ask  # noqa: F401  (same building blocks as the pipeline)
    from rag_core.generation import GeneratorConfig, generate_batch, load_generator, load_tokenizer
    from rag_core.prompt import Passage, PromptBuilder, PromptConfig
    from rag_core.store.local_server import LocalRedis

    work = Path(tempfile.mkdtemp(prefix="beam-rag-qa-bench-"))
    server = LocalRedis(require_password=False, data_dir=work / "redis", port=17390 + os.getpid() % 1000)
    server.start()
    result: dict[str, object] = {"questions": args.questions, "generation_batch_size": args.batch_size}
    try:
        ingest.run(["--input", str(SAMPLE / "docs.jsonl"), "--index", "bench_qa", "--redis-url", server.url])
        qpath = work / "questions.jsonl"
        rows = write_questions(qpath, args.questions)
        load_generator(GeneratorConfig())  # convert/cache the packaged model outside the timing

        out = work / "answers.jsonl"
        t0 = time.perf_counter()
        summary = query.run(query_argv(qpath, out, server.url, "--generation-batch-size", str(args.batch_size)))
        pipeline_s = time.perf_counter() - t0
        answers = [json.loads(line) for line in out.read_text().splitlines()]
        result.update(pipeline_seconds=round(pipeline_s, 1), pipeline_questions_per_s=round(len(answers) / pipeline_s, 2),
                      answered=summary.get("questions_answered"))

        # Ceiling: the very prompts the pipeline built, through plain model.generate in one process.
        config = GeneratorConfig(batch_size=args.batch_size, max_new_tokens=48, large_model=False)
        builder = PromptBuilder(PromptConfig.for_style("compact", 1536), load_tokenizer(config.model))
        prompts = [builder.build(a["question"], [Passage(s["chunk_id"], s["doc_id"], s["title"] or "", s["text"] or "",
                                                         float(s["score"])) for s in a["sources"]]).text
                   for a in answers if a["sources"]]
        loaded = load_generator(config)
        t1 = time.perf_counter()
        generate_batch(loaded, prompts, config)
        ceiling_s = time.perf_counter() - t1
        result.update(ceiling_seconds=round(ceiling_s, 1), ceiling_questions_per_s=round(len(prompts) / ceiling_s, 2),
                      ratio_pipeline_to_ceiling=round((len(answers) / pipeline_s) / (len(prompts) / ceiling_s), 3))

        many = rows * max(1, 256 // len(rows))
        unbatched = [retrieval_ms(server.url, many, 1) for _ in range(3)]
        batched = [retrieval_ms(server.url, many, 32) for _ in range(3)]
        result.update(retrieval_ms_per_question_unbatched=round(statistics.median(unbatched), 3),
                      retrieval_ms_per_question_batched32=round(statistics.median(batched), 3))

        print(json.dumps(result), file=sys.stderr, flush=True)  # partial results survive a later failure
        if not args.skip_memory:
            py = sys.executable
            common = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            mem: dict[str, object] = {}
            for label, extra in (("retrieval_only", ["--retrieval-only"]), ("large_model_on", []),
                                 ("large_model_off", ["--no-large-model"])):
                r = run_measured([py, "-m", "pipelines.query", *query_argv(qpath, work / f"{label}.jsonl", server.url,
                                                                         *common, *extra)],
                                 env=env, log=work / f"{label}.log")
                mem[label] = r["peak_rss_mb_process_tree"]
            # One copy's resident cost: weights may be memory-mapped and only become
            # resident when used, so measure current RSS after one generation.
            one_copy = run_measured([py, "-c", "import json;import rag_core.generation as g;"
                                     "rss=lambda:int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])/1024;"
                                     "r0=rss();c=g.GeneratorConfig(large_model=False,max_new_tokens=4);"
                                     "m=g.load_generator(c);g.generate_batch(m,['Say hi.'],c);"
                                     "print(json.dumps({'model_mb':rss()-r0}))"],
                                    env=env)
            model_mb = float(one_copy["model_mb"])
            on_cost = float(mem["large_model_on"]) - float(mem["retrieval_only"])  # type: ignore[arg-type]
            off_cost = float(mem["large_model_off"]) - float(mem["retrieval_only"])  # type: ignore[arg-type]
            result.update(memory_peak_mb=mem, one_model_copy_mb=round(model_mb, 1),
                          large_model_on_cost_in_copies=round(on_cost / model_mb, 2) if model_mb > 0 else None,
                          large_model_off_cost_in_copies=round(off_cost / model_mb, 2) if model_mb > 0 else None)
        print(json.dumps(result))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
