"""Faults with a real Redis that the test kills (SIGKILL) and restarts.

Every test here runs its own ``LocalRedis`` (own port, own folder): the session
server other tests share is never touched.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipelines import cli, ingest, query
from rag_core.errors import RedisUnavailableError
from rag_core.store.catalog import IndexCatalog
from rag_core.store.local_server import LocalRedis
from rag_core.types import DeadLetter
from reliability_support import (
    AliasWatcher, corpus, dedicated_redis, free_port, orphans, raw_client, snapshot, write_jsonl,
)

BIG = 240  # documents (one chunk each) in the build that gets the fault
SMALL = 4
# Small embedding and write batches: writes land in many steps, so a kill falls mid-build.
BUILD_FLAGS = ["--embedding-batch-size", "8", "--write-batch-size", "8"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    with dedicated_redis(tmp_path_factory.mktemp("fault-redis")) as srv:
        yield srv


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("fault-docs") / "big.jsonl", corpus(BIG))


@pytest.fixture(scope="module")
def reference(server: LocalRedis, big_corpus: Path) -> Any:
    """What a clean build of the big corpus serves (in its own alias on the same server)."""
    ingest.run(["--input", str(big_corpus), "--index", "clean", "--redis-url", server.url, *BUILD_FLAGS])
    client = raw_client(server)
    try:
        ref = snapshot(client, "clean")
    finally:
        client.close()
    assert ref.num_docs == BIG and len(ref.chunk_ids) == BIG and ref.duplicates == 0
    return ref


def assert_one_line_error(err: str, expected: str, what: str = "") -> None:
    """The CLI's error is one line, ``beam-rag: error: ...``, last on stderr, with no traceback
    (model-loading progress bars may come before it)."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("beam-rag: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], (what, err)
    assert expected in errors[0], (what, errors[0])
    assert "Traceback" not in err, what


def build_v1(server: LocalRedis, tmp_path: Path, alias: str) -> tuple[str, int]:
    """The last complete version, before any fault: SMALL documents."""
    small = write_jsonl(tmp_path / "small.jsonl", corpus(SMALL, prefix="old"))
    ingest.run(["--input", str(small), "--index", alias, "--redis-url", server.url])
    client = raw_client(server)
    try:
        return IndexCatalog(client, alias).current_index() or "", SMALL
    finally:
        client.close()


def key_count(client: Any) -> int:
    return int(client.dbsize())


def search_count(client: Any) -> int:
    return int(client.info("commandstats").get("cmdstat_FT.SEARCH", {}).get("calls", 0))


class LogSeen(logging.Handler):
    """Sets ``event`` when ``logger`` logs a message starting with ``prefix``."""

    def __init__(self, logger: str, prefix: str):
        super().__init__(logging.DEBUG)
        self.logger, self.prefix, self.event = logging.getLogger(logger), prefix, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.event.set()

    def __enter__(self) -> threading.Event:
        self.logger.addHandler(self)
        return self.event

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self)


class Crash(threading.Thread):
    """SIGKILL Redis once ``measure`` (keys, searches ...) grew by ``after``; restart it
    ``restart_after_s`` later, or leave it down (None)."""

    def __init__(self, server: LocalRedis, after: int, restart_after_s: float | None,
                 measure: Callable[[Any], int] = key_count, restart_once: threading.Event | None = None):
        super().__init__(daemon=True)
        self.server, self.after, self.restart_after_s, self.measure = server, after, restart_after_s, measure
        # Set by the code under test when it saw the outage: restart only after that, so the
        # retry path runs even when the kill fell between two writes.
        self.restart_once = restart_once
        client = raw_client(server)
        try:
            self.base = measure(client)
        finally:
            client.close()
        self.grown_at_kill: int | None = None
        self.restarted_at = 0.0
        self.restarted = threading.Event()
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            client = raw_client(self.server)
            try:
                while not self._halt.is_set():
                    grown = self.measure(client) - self.base
                    if grown >= self.after:
                        self.grown_at_kill = grown
                        break
                    time.sleep(0.003)
            finally:
                client.close()
            if self.grown_at_kill is None:
                return
            self.server.kill()
            if self.restart_after_s is not None:
                if self.restart_once is not None:
                    self.restart_once.wait(60)
                time.sleep(self.restart_after_s)
                self.server.start()
                self.restarted_at = time.monotonic()
                self.restarted.set()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def test_kill_mid_build_then_restart_completes_with_the_clean_index(
        server: LocalRedis, reference: Any, big_corpus: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    alias = "kb_restart"
    v1, v1_docs = build_v1(server, tmp_path, alias)
    write_failure = f"Writing to Redis at {server.url} failed"  # rag_core.retry's warning before each retry
    with LogSeen("rag_core.retry", write_failure) as write_failed, AliasWatcher(server, alias) as watcher:
        crash = Crash(server, after=BIG // 4, restart_after_s=1.0, restart_once=write_failed)
        crash.start()
        try:
            summary = ingest.run(["--input", str(big_corpus), "--index", alias, "--redis-url", server.url,
                                  *BUILD_FLAGS])
        finally:
            crash.stop()
    assert crash.error is None
    assert crash.grown_at_kill is not None and crash.grown_at_kill < BIG, "the kill must land mid-build"
    assert crash.restarted.is_set()
    # The writer retried through the outage (bounded, with backoff) and the job completed.
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith(write_failure)]
    assert retries and all("retry" in m for m in retries)
    assert summary["documents_indexed"] == BIG and summary["chunks_written"] == BIG
    assert summary["documents_dead_lettered"] == 0

    client = raw_client(server)
    try:
        after = snapshot(client, alias)
        leftovers = orphans(client, alias)
    finally:
        client.close()
    assert after.index != v1 and after.num_docs == BIG and after.duplicates == 0
    assert after.chunk_ids == reference.chunk_ids and after.content == reference.content
    assert leftovers == {"keys": [], "indexes": [], "building": []}

    # The alias never pointed anywhere but the last complete version (v1) and, once
    # published, the new one. Once `start` returned (it waits for RediSearch to re-index
    # what the AOF replayed), v1 was served whole until the new version replaced it.
    assert "down" in watcher.seen
    assert {index for index, _ in watcher.served()} <= {v1, after.index}
    assert watcher.served(since=crash.restarted_at) <= {(v1, v1_docs), (after.index, BIG)}
    assert (v1, v1_docs) in watcher.served(since=crash.restarted_at), "after the restart v1 must be served"


def test_outage_longer_than_retries_fails_clearly_and_a_rerun_cleans_up(
        server: LocalRedis, reference: Any, big_corpus: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    alias = "kb_outage"
    v1, v1_docs = build_v1(server, tmp_path, alias)
    crash = Crash(server, after=BIG // 4, restart_after_s=None)
    crash.start()
    started = time.monotonic()
    try:
        code = cli.main(["ingest", "--input", str(big_corpus), "--index", alias, "--redis-url", server.url,
                         "--write-max-retries", "2", *BUILD_FLAGS])
    finally:
        crash.stop()
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert crash.error is None and crash.grown_at_kill is not None and crash.grown_at_kill < BIG
    # A clear, one-line error naming the URL, not a traceback, once the bounded retries ran out.
    assert code == cli.EXIT_ERROR
    assert_one_line_error(err, f"Writing to Redis at {server.url} failed after 3 attempts: ConnectionError")
    assert elapsed < 120

    server.start()  # same data folder: the AOF brings back everything acknowledged
    client = raw_client(server)
    try:
        catalog = IndexCatalog(client, alias)
        assert catalog.current_index() == v1 and catalog.info()["num_docs"] == v1_docs
        abandoned = orphans(client, alias)
        # register_build ran before the crash: an abandoned "building" version with partial keys.
        assert len(abandoned["building"]) == 1 and 0 < len(abandoned["keys"]) < BIG
    finally:
        client.close()

    summary = ingest.run(["--input", str(big_corpus), "--index", alias, "--redis-url", server.url, *BUILD_FLAGS])
    assert summary["documents_indexed"] == BIG
    client = raw_client(server)
    try:
        after = snapshot(client, alias)
        leftovers = orphans(client, alias)
        versions = IndexCatalog(client, alias).versions()
    finally:
        client.close()
    assert after.num_docs == BIG and after.duplicates == 0
    assert after.chunk_ids == reference.chunk_ids and after.content == reference.content
    # The abandoned build is pruned when the rerun publishes: no orphan keys or indexes.
    assert leftovers == {"keys": [], "indexes": [], "building": []}
    assert [r.index for r in versions] == [v1, after.index]  # v1 kept for rollback (--keep-versions 1)



def test_out_of_memory_during_a_build_fails_clearly_and_a_rerun_cleans_up(
        server: LocalRedis, reference: Any, big_corpus: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    alias = "kb_oom"
    v1, v1_docs = build_v1(server, tmp_path, alias)
    client = raw_client(server)
    try:
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", str(used + 300_000))  # room for a few batches, not for the build
        code = cli.main(["ingest", "--input", str(big_corpus), "--index", alias, "--redis-url", server.url,
                         *BUILD_FLAGS])
    finally:
        client.config_set("maxmemory", "0")
        client.close()
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR
    assert_one_line_error(err, f"Redis at {server.url} refused the write: command not allowed when used memory "
                               "> 'maxmemory' (Redis is out of memory: raise its maxmemory")
    assert "HSET" not in err and "while running" not in err  # no echo of the command (document text)
    with raw_client(server) as client:
        catalog = IndexCatalog(client, alias)
        assert catalog.current_index() == v1 and catalog.info()["num_docs"] == v1_docs

    summary = ingest.run(["--input", str(big_corpus), "--index", alias, "--redis-url", server.url, *BUILD_FLAGS])
    assert summary["documents_indexed"] == BIG
    with raw_client(server) as client:
        assert snapshot(client, alias).num_docs == BIG
        assert orphans(client, alias) == {"keys": [], "indexes": [], "building": []}

# --------------------------------------------------------------------------- unreachable at start


class SilentServer:
    """Accepts TCP connections (the kernel's backlog) and never answers: a hung Redis."""

    def __enter__(self) -> str:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        return f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"

    def __exit__(self, *exc: Any) -> None:
        self.sock.close()


@pytest.fixture
def questions_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "q.jsonl", [{"id": "q1", "question": "Where is Quillport?"}])


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "d.jsonl", corpus(2))


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_redis_fails_fast_naming_the_url(kind: str, tmp_path: Path, docs_file: Path,
                                                     questions_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    silent = SilentServer()
    url = silent.__enter__() if kind == "silent" else f"redis://127.0.0.1:{free_port()}/0"
    try:
        entry_points = {
            "ingest": lambda: ingest.run(["--input", str(docs_file), "--index", "kb", "--redis-url", url]),
            "query": lambda: query.run(["--input", str(questions_file), "--output", str(tmp_path / "a.jsonl"),
                                        "--index", "kb", "--redis-url", url, "--retrieval-only"]),
        }
        for name, call in entry_points.items():
            started = time.monotonic()
            with pytest.raises(RedisUnavailableError) as info:
                call()
            assert time.monotonic() - started < 10, f"{name} must fail within seconds"
            assert url in str(info.value), name

        cli_calls = {
            "ingest": ["ingest", "--input", str(docs_file), "--index", "kb", "--redis-url", url],
            "query": ["query", "--input", str(questions_file), "--output", str(tmp_path / "b.jsonl"),
                      "--index", "kb", "--redis-url", url, "--retrieval-only"],
            "index list": ["index", "list", "--redis-url", url],
            "index info": ["index", "info", "kb", "--redis-url", url],
        }
        for name, argv in cli_calls.items():
            started = time.monotonic()
            code = cli.main(argv)
            out, err = capsys.readouterr()
            assert time.monotonic() - started < 10, name
            assert code == cli.EXIT_ERROR, name
            assert_one_line_error(err, f"Cannot reach Redis at {url}", name)
            assert "Traceback" not in out
    finally:
        if kind == "silent":
            silent.__exit__()


# --------------------------------------------------------------------------- question answering


def _build_qa_index(server: LocalRedis, tmp_path: Path, alias: str, n: int) -> None:
    docs = write_jsonl(tmp_path / "qa_docs.jsonl", corpus(n))
    ingest.run(["--input", str(docs), "--index", alias, "--redis-url", server.url])


def _questions(tmp_path: Path, n: int) -> Path:
    topics = ["rivers", "volcanoes", "glaciers", "deserts", "forests", "reefs", "caves"]
    return write_jsonl(tmp_path / "questions.jsonl", [
        {"id": f"q{i:03d}", "question": f"Which note describes {topics[i % 7]} number {i}?"} for i in range(n)])


QA_FLAGS = ["--retrieval-only", "--embedding-batch-size", "4", "--retrieval-batch-size", "4",
            "--direct_num_workers", "1"]


def test_redis_restarted_during_question_answering_is_retried_and_every_question_answered(
        tmp_path: Path) -> None:
    n = 60
    with dedicated_redis(tmp_path / "redis") as server:
        _build_qa_index(server, tmp_path, "qa", 20)
        crash = Crash(server, after=4, restart_after_s=0.5, measure=search_count)
        crash.start()
        output = tmp_path / "answers.jsonl"
        try:
            summary = query.run(["--input", str(_questions(tmp_path, n)), "--output", str(output), "--index", "qa",
                                 "--redis-url", server.url, *QA_FLAGS])
        finally:
            crash.stop()
        assert crash.error is None and crash.restarted.is_set()
        assert summary["questions_answered"] == n and summary["questions_dead_lettered"] == 0
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        assert len(rows) == n and all(row["sources"] for row in rows)


def test_redis_killed_for_good_during_question_answering_dead_letters_the_unanswered(tmp_path: Path) -> None:
    n = 40
    with dedicated_redis(tmp_path / "redis") as server:
        _build_qa_index(server, tmp_path, "qa", 20)
        crash = Crash(server, after=8, restart_after_s=None, measure=search_count)
        crash.start()
        output, dead = tmp_path / "answers.jsonl", tmp_path / "dead.jsonl"
        started = time.monotonic()
        try:
            summary = query.run(["--input", str(_questions(tmp_path, n)), "--output", str(output), "--index", "qa",
                                 "--redis-url", server.url, "--dead-letter", str(dead), *QA_FLAGS])
        finally:
            crash.stop()
        elapsed = time.monotonic() - started
        assert crash.error is None and crash.grown_at_kill is not None
    assert summary["questions_read"] == n and summary["reconciled"] is True
    answered = {json.loads(line)["id"] for line in output.read_text().splitlines()}
    letters = [DeadLetter.from_json(line) for line in dead.read_text().splitlines()]
    dead_ids = {d.id for d in letters}
    assert 0 < len(answered) < n and summary["questions_answered"] == len(answered)
    assert summary["questions_dead_lettered"] == len(letters) == len(dead_ids) == n - len(answered)
    assert answered.isdisjoint(dead_ids) and answered | dead_ids == {f"q{i:03d}" for i in range(n)}
    for letter in letters:
        assert letter.stage == "retrieve" and letter.reason.startswith("retrieval failed: ")
        assert f"Redis at {server.url}" in letter.reason and "attempt" in letter.reason
        assert letter.excerpt.startswith("Which note describes")
    # The circuit breaker: after one full retry budget, later batches try once each
    # instead of waiting out the backoff again (10 batches of 4 would take > 30 s).
    assert sum("tried once" in d.reason for d in letters) > 0
    assert elapsed < 60

def _question_chunk(text: str) -> Any:
    from rag_core.embeddings import EmbeddingConfig, embed_texts, load_sentence_transformer
    from rag_core.types import Chunk, Content, Embedding

    config = EmbeddingConfig()
    vector = embed_texts(load_sentence_transformer(config), [text], config)[0]
    return Chunk(content=Content(text=text), id="q", embedding=Embedding(dense_embedding=vector.tolist()))


def _reindex_in_background(client: Any, alias: str, fillers: int) -> str:
    """Drop the live index (keeping its hashes), pad it with ``fillers`` more, and recreate it:
    RediSearch then re-indexes in the background, as after a restart of a big instance
    (redis-py reconnects transparently, so a client sees no error at all)."""
    import numpy as np

    catalog = IndexCatalog(client, alias)
    record = catalog.current()
    prefix = f"beamrag:{alias}:{record.version}:"
    rng = np.random.default_rng(0)
    pipe = client.pipeline(transaction=False)
    for i in range(fillers):
        vector = rng.standard_normal(384).astype(np.float32)
        pipe.hset(f"{prefix}filler{i}#0", mapping={
            "text": f"filler {i}", "doc_id": f"filler{i}", "chunk_id": f"filler{i}#0", "chunk_index": 0,
            "embedding": (vector / np.linalg.norm(vector)).tobytes()})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    client.execute_command("FT.DROPINDEX", record.index)  # drops its alias too
    catalog.ensure_index(record, {})
    client.execute_command("FT.ALIASUPDATE", alias, record.index)
    return record.index


def test_during_a_reindex_the_handler_waits_instead_of_searching_half_an_index(
        tmp_path: Path) -> None:
    from rag_core.enrichment import ERROR_KEY, RedisVectorSearchHandler, VectorSearchParameters
    from rag_core.store.info import ft_info
    from rag_core.store.connection import RedisConnection

    request = _question_chunk("Which note describes volcanoes number 8?")
    with dedicated_redis(tmp_path / "redis") as server:
        _build_qa_index(server, tmp_path, "qa", 20)
        client = raw_client(server, socket_timeout=30.0)
        connection = RedisConnection.from_url(server.url)
        patient = RedisVectorSearchHandler(connection, VectorSearchParameters("qa", top_k=3))
        hasty = RedisVectorSearchHandler(connection, VectorSearchParameters("qa", top_k=3), on_unavailable="report",
                                         reindex_wait_s=0.0)
        try:
            with patient, hasty:
                assert patient(request)[1]["hits"][0]["doc_id"] == "doc0008"
                index = _reindex_in_background(client, "qa", 15000)
                assert int((ft_info(client, index) or {}).get("indexing", 0)) == 1
                client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # a network blip
                _, response = patient(request)  # reconnects silently, sees the re-index, waits
                info = ft_info(client, index) or {}
                assert int(info.get("indexing", 1)) == 0 and int(info["num_docs"]) == 15020
                assert response["hits"][0]["doc_id"] == "doc0008" and ERROR_KEY not in response

                _reindex_in_background(client, "qa", 15000)
                client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                _, response = hasty(request)  # no patience: reported, not answered from half an index
                assert response["hits"] == [] and "still re-indexing" in response[ERROR_KEY]
                assert f"Redis at {server.url}" in response[ERROR_KEY]
        finally:
            client.close()


class _NoModel:
    """What the stand-in generator "loads" (Beam's model sharing needs a weak-referenceable object)."""


class FailingBatchGenerator(ModelHandler[str, PredictionResult, _NoModel]):
    """A stand-in generator (no model) whose batches fail when a prompt holds ``EXPLODE``.

    It records every batch it was given, so the test knows exactly which questions
    shared a batch with the poisoned one.
    """

    def __init__(self, log: str, batch_size: int = 2):
        super().__init__()
        self.log, self.batch_size = log, batch_size

    def load_model(self) -> _NoModel:
        return _NoModel()

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": self.batch_size, "max_batch_size": self.batch_size}

    def run_inference(self, batch: Sequence[str], model: _NoModel,
                      inference_args: dict[str, Any] | None = None) -> list[PredictionResult]:
        poisoned = any("EXPLODE" in p for p in batch)
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"prompts": list(batch), "failed": poisoned}) + "\n")
        if poisoned:
            raise ValueError("generator cannot handle this batch")
        return [PredictionResult(p, "An answer from the context.", "stub") for p in batch]


def test_a_generator_failure_dead_letters_only_its_batch(tmp_path: Path, redis_url: str, index_name: str) -> None:
    docs = write_jsonl(tmp_path / "docs.jsonl", corpus(12))
    ingest.run(["--input", str(docs), "--index", index_name, "--redis-url", redis_url])
    qs = [{"id": f"q{i}", "question": f"Which note describes rivers number {i}?"} for i in range(10)]
    qs[3]["question"] = "EXPLODE: which note describes rivers number 3?"
    log = tmp_path / "batches.jsonl"
    output, dead = tmp_path / "answers.jsonl", tmp_path / "dead.jsonl"
    summary = query.run(["--input", str(write_jsonl(tmp_path / "q.jsonl", qs)), "--output", str(output),
                         "--index", index_name, "--redis-url", redis_url, "--dead-letter", str(dead),
                         "--min-score", "-1", "--no-large-model"],
                        generator_handler=FailingBatchGenerator(str(log)))
    batches = [json.loads(line) for line in log.read_text().splitlines()]
    failed_prompts = [p for b in batches if b["failed"] for p in b["prompts"]]
    in_failed_batch = {q["id"] for q in qs if any(q["question"] in p for p in failed_prompts)}
    assert "q3" in in_failed_batch and len(in_failed_batch) <= 2
    letters = [DeadLetter.from_json(line) for line in dead.read_text().splitlines()]
    assert {d.id for d in letters} == in_failed_batch
    assert all(d.stage == "generate" and "generator cannot handle this batch" in d.reason for d in letters)
    answered = {json.loads(line)["id"] for line in output.read_text().splitlines()}
    assert answered == {q["id"] for q in qs} - in_failed_batch
    assert summary["questions_dead_lettered"] == len(in_failed_batch) and summary["reconciled"] is True


# --------------------------------------------------------------------------- the local server, through the CLI


def _cli_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 else None), err


def test_cli_local_redis_keeps_data_across_stop_start_and_a_crash(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder, port = tmp_path / "home-redis", free_port()
    base = ["--port", str(port), "--data-dir", str(folder)]
    code, status, err = _cli_json(["redis", "start", *base], capsys)
    assert code == 0 and status["running"] and status["search_module"] is True, err
    server = LocalRedis(data_dir=folder, port=port)
    try:
        docs = write_jsonl(tmp_path / "docs.jsonl", corpus(3))
        assert status["auth"] is True
        assert Path(status["password_file"]).read_text().strip() not in json.dumps(status)
        ingest.run(["--input", str(docs), "--index", "kept", "--redis-url", status["url"],
                    "--redis-password-file", status["password_file"]])
        client = raw_client(server)
        client.set("plain", "kept")
        client.close()

        code, stopped, _ = _cli_json(["redis", "stop", *base], capsys)
        assert code == 0 and stopped["running"] is False
        code, status, _ = _cli_json(["redis", "status", "--json", *base], capsys)
        assert code == 0 and status["running"] is False
        code, started, _ = _cli_json(["redis", "start", *base], capsys)
        assert code == 0 and started["running"]
        client = raw_client(server)
        assert client.get("plain") == b"kept"
        assert IndexCatalog(client, "kept").info()["num_docs"] == 3  # index searchable at once
        client.set("after-restart", "written just before the crash")
        client.close()

        server.kill()  # SIGKILL: only the AOF (appendfsync everysec, already written) survives
        code, status, _ = _cli_json(["redis", "status", "--json", *base], capsys)
        assert code == 0 and status["running"] is False
        code, started, _ = _cli_json(["redis", "start", *base], capsys)
        assert code == 0 and started["running"]
        client = raw_client(server)
        assert client.get("after-restart") == b"written just before the crash"
        assert IndexCatalog(client, "kept").info()["num_docs"] == 3
        client.close()

        # A second server on the same data folder is refused (two servers would corrupt the AOF).
        code, _, err = _cli_json(["redis", "start", "--port", str(free_port()), "--data-dir", str(folder)], capsys)
        assert code == cli.EXIT_ERROR
        assert err.startswith("beam-rag: error: A local Redis is already running on") and "only one server" in err
        client = raw_client(server)
        assert client.ping()  # the first server is untouched
        client.close()
    finally:
        cli.main(["redis", "stop", *base])
        capsys.readouterr()


def test_a_hung_redis_is_detected_once_then_batches_fail_fast_until_a_probe_answers(tmp_path: Path) -> None:
    import os
    import signal

    from apache_beam.ml.rag.types import Chunk, Content, Embedding

    from rag_core.enrichment import ERROR_KEY, RedisVectorSearchHandler, VectorSearchParameters
    from rag_core.retry import RetryPolicy
    from rag_core.store.connection import RedisConnection

    with dedicated_redis(tmp_path / "redis") as server:
        _build_qa_index(server, tmp_path, "qa", 4)
        with raw_client(server) as client:
            dim = IndexCatalog(client, "qa").current().embedding["dimension"]
        request = Chunk(content=Content(text="Which note?"), id="q",
                        embedding=Embedding(dense_embedding=[1.0 / dim ** 0.5] * dim))
        conn = RedisConnection.from_url(server.url, socket_timeout=0.5, connect_timeout=0.5)
        pid = int(json.loads(server.pidfile.read_text())["pid"])
        handler = RedisVectorSearchHandler(conn, VectorSearchParameters("qa", top_k=2),
                                           retry=RetryPolicy(max_retries=2, backoff_s=0.05),
                                           on_unavailable="report", hung_probe_s=1.0)

        def timed() -> tuple[float, dict[str, Any]]:
            started = time.monotonic()
            _, response = handler(request)
            return time.monotonic() - started, response

        with handler:
            assert len(timed()[1]["hits"]) == 2
            os.kill(pid, signal.SIGSTOP)  # the process stays, its socket accepts, nothing answers
            try:
                first, response = timed()
                assert first >= 1.0 and "failed after 3 attempts: TimeoutError" in response[ERROR_KEY]
                fast = [timed() for _ in range(5)]
                assert all(t < 0.2 and "was not sent" in r[ERROR_KEY] for t, r in fast), fast
                time.sleep(1.0)
                probe, response = timed()  # one try, one socket timeout: still hung
                assert 0.4 <= probe < 1.0 and "tried once" in response[ERROR_KEY], (probe, response)
            finally:
                os.kill(pid, signal.SIGCONT)
            time.sleep(1.0)
            assert len(timed()[1]["hits"]) == 2 and ERROR_KEY not in timed()[1]  # answered again
