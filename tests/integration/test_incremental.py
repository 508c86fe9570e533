"""Incremental builds (rag_core/reuse.py) end to end: real Redis, the packaged MiniLM, DirectRunner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import ingest
from rag_core.store.catalog import IndexCatalog
from rag_core.store.schema import catalog_key

LONG = {"id": "long", "title": "Harbours",
        "text": " ".join(f"Harbour number {n} of Quillport shelters {n * 3} fishing boats from the winter storms."
                         for n in range(60))}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build(redis_url: str, index: str, path: Path, *extra: str) -> dict[str, Any]:
    return ingest.run(["--input", str(path), "--index", index, "--redis-url", redis_url, *extra])


def dump(client: Any, index: str) -> dict[str, dict[bytes, bytes]]:
    """Every chunk of the live version, keyed by chunk id (prefix stripped), all fields as stored."""
    prefix = IndexCatalog(client, index).current().prefix
    return {key.decode()[len(prefix):]: client.hgetall(key)
            for key in client.scan_iter(match=prefix + "*", count=1000)}


def test_unchanged_rebuild_embeds_nothing_and_equals_a_full_rebuild(facts, tmp_path, redis_url, redis_client,
                                                                    index_name):
    path = write_jsonl(tmp_path / "docs.jsonl", facts + [LONG])
    first = build(redis_url, index_name, path)
    total = first["chunks_written"]
    assert total > len(facts) + 1  # the long document has several chunks
    assert first["chunks_embedded"] == total and first["chunks_reused"] == 0 and first["reused_from"] is None
    assert "no live version" in first["reuse"]
    before = dump(redis_client, index_name)

    again = build(redis_url, index_name, path)
    assert again["chunks_embedded"] == 0 and again["chunks_reused"] == total
    assert again["reused_from"] == first["version"] and again["version"] != first["version"]
    assert again["reuse"] == f"{total} of {total} chunks reused from {first['version']}"
    reused = dump(redis_client, index_name)
    assert reused == before  # ids, hashes, texts, metadata and vectors, byte for byte

    full = build(redis_url, index_name, path, "--no-reuse")
    assert full["chunks_embedded"] == total and full["chunks_reused"] == 0 and full["reused_from"] is None
    assert full["reuse"] == f"0 of {total} chunks reused (--no-reuse: every chunk embedded)"
    assert dump(redis_client, index_name) == reused
    # The reused version is independent: its keys are its own, the source's are gone once pruned.
    assert not list(redis_client.scan_iter(match=f"beamrag:{index_name}:{first['version'].split('__')[1]}:*"))


def test_edits_deletions_and_moves_embed_only_what_changed(facts, tmp_path, redis_url, redis_client, index_name):
    build(redis_url, index_name, write_jsonl(tmp_path / "v1.jsonl", facts + [LONG]))
    before = dump(redis_client, index_name)
    edited = dict(facts[0], text="The capital of Zorbania is Newport, a river city.")
    moved = dict(facts[3], id="tides-renamed")  # same title and text under a new id
    added = {"id": "owls", "title": "Owls", "text": "Owls hunt at night and turn their heads very far."}
    rows = [edited, facts[2], moved, LONG, added]  # "bees" is gone
    summary = build(redis_url, index_name, write_jsonl(tmp_path / "v2.jsonl", rows))
    after = dump(redis_client, index_name)

    assert summary["chunks_embedded"] == 2  # the edited document and the new one
    assert summary["chunks_reused"] == len(after) - 2 == summary["chunks_written"] - 2
    assert not any(k.startswith("bees#") for k in after)  # a rebuild holds exactly the input
    assert "tides#0" not in after and after["tides-renamed#0"][b"embedding"] == before["tides#0"][b"embedding"]
    assert after["rust#0"] == before["rust#0"]
    assert all(after[k] == before[k] for k in before if k.startswith("long#"))
    assert after["zorb#0"][b"embedding"] != before["zorb#0"][b"embedding"]
    assert after["zorb#0"][b"text"] == edited["text"].encode()
    vector = np.frombuffer(after["owls#0"][b"embedding"], dtype=np.float32)
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3
    assert IndexCatalog(redis_client, index_name).info()["num_docs"] == len(after)


def test_upsert_reuses_the_live_version(facts, tmp_path, redis_url, redis_client, index_name):
    path = write_jsonl(tmp_path / "docs.jsonl", facts)
    first = build(redis_url, index_name, path)
    before = dump(redis_client, index_name)
    changed = write_jsonl(tmp_path / "changed.jsonl", [dict(facts[1], text="Bees dance to show where food is.")]
                          + facts[2:])
    summary = build(redis_url, index_name, changed, "--mode", "upsert")
    assert summary["version"] == first["version"] and summary["reused_from"] == first["version"]
    assert summary["chunks_embedded"] == 1 and summary["chunks_reused"] == 2
    after = dump(redis_client, index_name)
    assert after["rust#0"] == before["rust#0"] and after["zorb#0"] == before["zorb#0"]
    assert after["bees#0"][b"embedding"] != before["bees#0"][b"embedding"]


def test_an_embedding_change_turns_reuse_off(facts, tmp_path, redis_url, redis_client, index_name):
    path = write_jsonl(tmp_path / "docs.jsonl", facts)
    build(redis_url, index_name, path)
    catalog = IndexCatalog(redis_client, index_name)
    live = catalog.current()
    # The live version says it was embedded by another model (as after a model upgrade).
    redis_client.hset(catalog_key(index_name), live.version,
                      replace(live, embedding={**live.embedding, "model": "another/model"}).to_json())
    summary = build(redis_url, index_name, path)
    assert summary["chunks_reused"] == 0 and summary["chunks_embedded"] == len(facts)
    assert summary["reused_from"] is None
    assert "embedding model changed ('another/model' -> " in summary["reuse"]


def test_upsert_delete_missing_removes_what_the_input_no_longer_has(facts, tmp_path, redis_url, redis_client,
                                                                    index_name, capsys):
    from pipelines import cli

    def doc_ids() -> set[str]:
        return {chunk_id.rpartition("#")[0] for chunk_id in dump(redis_client, index_name)}

    build(redis_url, index_name, write_jsonl(tmp_path / "all.jsonl", facts))
    kept = facts[:-1]
    kept_path = write_jsonl(tmp_path / "kept.jsonl", kept)
    plain = build(redis_url, index_name, kept_path, "--mode", "upsert")
    assert plain["documents_deleted"] == 0 and facts[-1]["id"] in doc_ids()  # an upsert alone keeps it
    summary = build(redis_url, index_name, kept_path, "--mode", "upsert", "--delete-missing")
    assert summary["documents_deleted"] == 1 and summary["documents_indexed"] == len(kept)
    assert doc_ids() == {d["id"] for d in kept}
    info = IndexCatalog(redis_client, index_name).info()
    assert info["num_docs"] == len(dump(redis_client, index_name))  # the catalog's counts follow

    def refused(rows: list[Any], name: str) -> str:
        path = write_jsonl(tmp_path / name, rows) if not isinstance(rows[-1], str) else tmp_path / name
        if isinstance(rows[-1], str):
            path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
        code = cli.main(["ingest", "--input", str(path), "--index", index_name, "--redis-url", redis_url,
                         "--mode", "upsert", "--delete-missing"])
        assert code == cli.EXIT_ERROR
        assert doc_ids() == {d["id"] for d in kept}  # nothing deleted
        return capsys.readouterr().err

    err = refused(kept[:1], "one.jsonl")  # would delete most of the index
    assert f"--delete-missing would delete {len(kept) - 1} of the {len(kept)} documents" in err
    err = refused([*kept[1:], "{not json"], "bad.jsonl")  # a record whose id is unknown
    assert "input record(s) were dead-lettered" in err and "deleted nothing" in err

    assert cli.main(["ingest", "--input", str(kept_path), "--index", index_name, "--redis-url", redis_url,
                     "--delete-missing"]) == cli.EXIT_ERROR
    assert "--delete-missing is for --mode upsert" in capsys.readouterr().err


def test_keys_of_a_version_the_catalog_has_no_record_of_are_pruned_at_publish_and_dropped_with_the_index(
        facts, tmp_path, redis_url, redis_client, index_name):
    """Keys of abandoned builds are found by prefix (SCAN), not only through the catalog's records."""
    path = write_jsonl(tmp_path / "docs.jsonl", facts)
    build(redis_url, index_name, path)
    stray = f"beamrag:{index_name}:v20000101t000000000000:"
    newer_name = f"beamrag:{index_name}:v29990101t000000000000:a#0"  # newer than the build: not its to prune
    others = [f"beamrag:{index_name}x:v20000101t000000000000:z#0",  # another knowledge base
              f"beamrag:{index_name}:notaversion:z#0"]
    for key in [stray + "a#0", stray + "b#0", newer_name, *others]:
        redis_client.hset(key, mapping={"text": "left over"})
    catalog = IndexCatalog(redis_client, index_name)
    assert catalog.unrecorded_versions() == ["v20000101t000000000000", "v29990101t000000000000"]

    summary = build(redis_url, index_name, path)
    assert summary["chunks_reused"] == len(facts)
    assert not redis_client.exists(stray + "a#0", stray + "b#0")
    assert redis_client.exists(newer_name, *others) == 3
    assert catalog.unrecorded_versions() == ["v29990101t000000000000"]

    redis_client.hset(stray + "a#0", mapping={"text": "left over again"})
    dropped = catalog.drop()["dropped"]
    assert {"v20000101t000000000000", "v29990101t000000000000"} <= set(dropped)
    assert list(redis_client.scan_iter(match=f"beamrag:{index_name}:v*", count=1000)) == []
    assert redis_client.exists(*others) == 2
    redis_client.delete(*others)
