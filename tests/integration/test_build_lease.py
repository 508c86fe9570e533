"""The build lease (rag_core/store/lease.py) with the real Redis and the real ingest pipeline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipelines import ingest
from rag_core.errors import PublishRefusedError
from rag_core.store.catalog import IndexCatalog
from rag_core.store.lease import BuildLease, lease_key


def _docs(tmp_path: Path, facts) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in facts))
    return path


def test_a_second_build_exits_2_naming_the_running_one(facts, tmp_path, redis_url, redis_client, index_name,
                                                       capsys):
    running = BuildLease(redis_client, index_name, f"{index_name}__v20260101t000000000000").acquire()
    try:
        code = ingest.COMMAND.main(["--input", str(_docs(tmp_path, facts)), "--index", index_name,
                                    "--redis-url", redis_url])
    finally:
        running.release()
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert lines[-1] == (f"beam-rag: error: Index {index_name!r} is being built by {running.version} "
                         f"(started {running.started_at}); wait for it, or rerun with --wait-for-lock SECONDS")
    assert IndexCatalog(redis_client, index_name).versions() == []  # the refused build registered nothing


def test_an_expired_lease_is_taken_over_and_released_after(facts, tmp_path, redis_url, redis_client, index_name):
    dead = BuildLease(redis_client, index_name, f"{index_name}__v20260101t000000000000", ttl_s=1.0).acquire()
    started = time.monotonic()  # never renewed: its process "died"
    summary = ingest.run(["--input", str(_docs(tmp_path, facts)), "--index", index_name,
                          "--redis-url", redis_url, "--wait-for-lock", "30"])
    assert summary["documents_indexed"] == len(facts) and time.monotonic() - started >= 0.5
    assert not dead.held() and redis_client.exists(lease_key(index_name)) == 0


def test_only_the_holder_moves_the_alias(facts, tmp_path, redis_url, redis_client, index_name):
    ingest.run(["--input", str(_docs(tmp_path, facts)), "--index", index_name, "--redis-url", redis_url])
    live = IndexCatalog(redis_client, index_name).current_index()
    holder = BuildLease(redis_client, index_name, live).acquire()
    stale = BuildLease(redis_client, index_name, f"{index_name}__v20260101t000000000000")
    try:
        with pytest.raises(PublishRefusedError, match=f"lost its build lease to {live}"):
            stale.fenced("publish", lambda pipe: pipe.execute_command("FT.ALIASUPDATE", index_name, "nowhere"))
        holder.fenced("publish", lambda pipe: pipe.execute_command("FT.ALIASUPDATE", index_name, live))
    finally:
        holder.release()
    assert IndexCatalog(redis_client, index_name).current_index() == live


def test_a_lease_left_by_a_dead_process_is_taken_over_at_once(facts, tmp_path, redis_url, redis_client,
                                                              index_name):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    orphan = BuildLease(redis_client, index_name, f"{index_name}__v20260101t000000000000", ttl_s=600)
    value = json.loads(orphan.value) | {"pid": int(gone.stdout)}
    redis_client.set(lease_key(index_name), json.dumps(value), px=600_000)  # its build was killed
    summary = ingest.run(["--input", str(_docs(tmp_path, facts)), "--index", index_name,
                          "--redis-url", redis_url])
    assert summary["documents_indexed"] == len(facts) and redis_client.exists(lease_key(index_name)) == 0


def test_an_upsert_that_waited_for_a_rebuild_writes_into_what_it_published(facts, tmp_path, redis_url,
                                                                           redis_client, index_name):
    import os
    import subprocess
    import sys

    ingest.run(["--input", str(_docs(tmp_path, facts)), "--index", index_name, "--redis-url", redis_url])
    catalog = IndexCatalog(redis_client, index_name)
    first = catalog.current_index()
    rebuild_input = tmp_path / "rebuild.jsonl"
    rebuild_input.write_text("".join(json.dumps(r) + "\n" for r in facts))
    repo = Path(__file__).resolve().parents[2]
    rebuild = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "--quiet", "ingest", "--input", str(rebuild_input), "--index",
         index_name, "--redis-url", redis_url],
        env={**os.environ, "PYTHONPATH": str(repo)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while redis_client.exists(lease_key(index_name)) == 0:  # the rebuild holds the lease
            assert rebuild.poll() is None and time.monotonic() < deadline, "the rebuild never took the lease"
            time.sleep(0.05)
        added = tmp_path / "added.jsonl"
        added.write_text(json.dumps({"id": "comet", "text": "Comet Halley returns every 76 years."}) + "\n")
        summary = ingest.run(["--input", str(added), "--index", index_name, "--redis-url", redis_url,
                              "--mode", "upsert", "--wait-for-lock", "300"])
    finally:
        _, err = rebuild.communicate(timeout=300)
    assert rebuild.returncode == 0, err.decode()[-2000:]
    live = catalog.current_index()
    assert live != first  # the rebuild published a new version while the upsert waited
    assert summary["version"] == live and summary["documents_indexed"] == 1
    prefix = catalog.current().prefix
    assert list(redis_client.scan_iter(match=f"{prefix}comet*"))  # in the served version, not the old one


def test_a_drop_during_a_rebuild_waits_for_its_publish_and_leaves_nothing(facts, tmp_path, redis_url,
                                                                          redis_client, index_name, capsys):
    import os
    import subprocess
    import sys

    from pipelines import cli
    from rag_core.store.schema import KEY_ROOT

    ingest.run(["--input", str(_docs(tmp_path, facts)), "--index", index_name, "--redis-url", redis_url])
    repo = Path(__file__).resolve().parents[2]
    rebuild = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "--quiet", "ingest", "--input", str(_docs(tmp_path, facts)),
         "--index", index_name, "--redis-url", redis_url],
        env={**os.environ, "PYTHONPATH": str(repo)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while redis_client.exists(lease_key(index_name)) == 0:
            assert rebuild.poll() is None and time.monotonic() < deadline, "the rebuild never took the lease"
            time.sleep(0.05)
        code = cli.main(["index", "drop", index_name, "--force", "--wait-for-lock", "300", "--redis-url", redis_url])
    finally:
        _, err = rebuild.communicate(timeout=300)
    assert rebuild.returncode == 0, err.decode()[-2000:]  # the rebuild published whole, then the drop ran
    assert code == 0 and len(json.loads(capsys.readouterr().out)["dropped"]) == 2  # both versions
    assert IndexCatalog(redis_client, index_name).versions() == []
    assert list(redis_client.scan_iter(match=f"{KEY_ROOT}:{index_name}:*")) == []
    assert [i for i in redis_client.execute_command("FT._LIST")
            if (i.decode() if isinstance(i, bytes) else i).startswith(index_name)] == []
