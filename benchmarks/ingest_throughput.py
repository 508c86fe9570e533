"""Knowledge-base build throughput on SciFact versus the raw model ceiling.

Runs the real ingest pipeline (DirectRunner, embedded Redis) over the corpus,
then, in the same process, embeds exactly the same chunks with plain
``SentenceTransformer.encode``: the ratio is what the pipeline (reading,
chunking, Beam, Redis writes, indexing) costs on top of the model itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import ingest  # noqa: E402
from rag_core.chunking import Chunker, ChunkingConfig, load_token_spans  # noqa: E402
from rag_core.embeddings import EmbeddingConfig, embed_texts, load_sentence_transformer  # noqa: E402
from rag_core.evaluation.scifact import corpus_jsonl_rows, load_scifact  # noqa: E402
from rag_core.store.catalog import IndexCatalog  # noqa: E402
from rag_core.store.info import ft_info  # noqa: E402
from rag_core.store.connection import RedisConnection  # noqa: E402
from rag_core.store.local_server import LocalRedis  # noqa: E402
from rag_core.types import Document  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--limit", type=int, default=0, help="first N documents only (0 = all 5,183)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--reference", action="store_true",
                        help="also time the peers' baseline: plain torch SentenceTransformer.encode of whole "
                             "documents (title + text, cut at 256 tokens), batch 32")
    parser.add_argument("--max-chunks-per-doc", type=int, default=0,
                        help="forwarded to beam-rag ingest (1 = whole documents cut at the model window)")
    args = parser.parse_args()

    data = load_scifact(args.data_dir)
    rows = list(corpus_jsonl_rows(data))[: args.limit or None]
    work = Path(tempfile.mkdtemp(prefix="beam-rag-bench-"))
    corpus = work / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    server = LocalRedis(require_password=False, data_dir=work / "redis", port=16390 + os.getpid() % 1000)
    server.start()
    try:
        config = EmbeddingConfig(backend=args.backend, batch_size=args.batch_size)
        load_sentence_transformer(config)  # warm caches (ONNX export) outside the timing
        t0 = time.perf_counter()
        summary = ingest.run(["--input", str(corpus), "--index", "bench", "--redis-url", server.url,
                              "--embedding-backend", args.backend, "--embedding-batch-size", str(args.batch_size),
                              "--index-type", "flat", "--max-chunks-per-doc", str(args.max_chunks_per_doc)])
        pipeline_s = time.perf_counter() - t0
        client = RedisConnection.from_url(server.url).client()
        info = IndexCatalog(client, "bench").info()
        stats = ft_info(client, info["index"]) or {}
        client.close()
        chunks = int(info["num_docs"])
        pipeline_rss = peak_rss_mb()
        result = {
            "backend": args.backend, "max_chunks_per_doc": args.max_chunks_per_doc, "documents": len(rows), "chunks": chunks,
            "pipeline_seconds": round(pipeline_s, 1),
            "pipeline_docs_per_s": round(len(rows) / pipeline_s, 1),
            "pipeline_chunks_per_s": round(chunks / pipeline_s, 1),
            "redis_memory_mb": round(float(stats.get("total_index_memory_sz_mb", 0) or 0)
                                     + float(stats.get("vector_index_sz_mb", 0) or 0), 1),
            "peak_rss_mb_pipeline": round(pipeline_rss, 0),
            "summary": summary,
        }
        if not args.skip_ceiling:
            model = load_sentence_transformer(config)
            chunker = Chunker(load_token_spans(config.resolved_model),
                              ChunkingConfig(max_chunks=args.max_chunks_per_doc or None))
            texts = [c.content.text for r in rows for c in chunker(Document(id=r["id"], text=r["text"],
                                                                             title=r["title"]))]
            t1 = time.perf_counter()
            embed_texts(model, texts, config)
            ceiling_s = time.perf_counter() - t1
            result.update({
                "ceiling_seconds": round(ceiling_s, 1),
                "ceiling_chunks_per_s": round(len(texts) / ceiling_s, 1),
                "ceiling_docs_per_s": round(len(rows) / ceiling_s, 1),
                "ratio_pipeline_to_ceiling": round(ceiling_s / pipeline_s, 3),
            })
        if args.reference:
            reference = EmbeddingConfig(batch_size=32)  # the torch backend, the default
            model = load_sentence_transformer(reference)
            whole = [f"{r['title']} {r['text']}" if r["title"] else r["text"] for r in rows]
            t2 = time.perf_counter()
            embed_texts(model, whole, reference)
            reference_s = time.perf_counter() - t2
            result.update({
                "reference_whole_doc_torch_seconds": round(reference_s, 1),
                "reference_whole_doc_torch_docs_per_s": round(len(rows) / reference_s, 1),
                "speedup_vs_reference": round(reference_s / pipeline_s, 2),
            })
        result["peak_rss_mb"] = round(peak_rss_mb(), 0)
        print(json.dumps(result))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
