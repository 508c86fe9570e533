"""Shared fixtures: one real local Redis per test session, a unique index name per test."""

from __future__ import annotations

import os
import re
import socket
import tempfile
from typing import Any, Callable, Iterator
from uuid import uuid4

import pytest

# Before anything imports transformers / huggingface_hub: a model that is not
# packaged locally must fail fast instead of trying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Converted/exported models are worth keeping between runs; everything else a
# test writes (dead letters, local Redis data) goes to a throwaway home.
os.environ.setdefault("BEAM_RAG_CACHE_DIR", os.path.expanduser("~/.beam-rag/models"))
os.environ["BEAM_RAG_HOME"] = os.environ.get("BEAM_RAG_TEST_HOME") or tempfile.mkdtemp(prefix="beam-rag-test-")

from rag_core.paths import redis_data_dir  # noqa: E402
from rag_core.store.connection import RedisConnection  # noqa: E402
from rag_core.store.local_server import LocalRedis  # noqa: E402


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for a TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """The embedded Redis + RediSearch, as every command finds it: the (throwaway) home's
    default folder, with its generated password, on a free port.

    Tests pass ``redis_url`` (no password in it) and the CLI and pipelines find the
    password themselves, as they do for a user; a server already running there
    (``BEAM_RAG_TEST_HOME``) is used as it is.
    """
    server = LocalRedis(data_dir=redis_data_dir(), port=_free_port())
    running = server._running()
    if running is not None:
        server.port = running[1]
    server.start()
    assert server.status()["auth"] is True, "the session Redis must require a password"
    try:
        yield server
    finally:
        if running is None:
            server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: LocalRedis) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def redis_conn(redis_url: str, redis_server: LocalRedis) -> RedisConnection:
    return RedisConnection.from_url(redis_url, password=redis_server.password)


@pytest.fixture
def redis_client(redis_conn: RedisConnection) -> Iterator[Any]:
    """A redis-py client for one test."""
    client = redis_conn.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def index_name(request: pytest.FixtureRequest) -> str:
    """Unique per test, so tests sharing the session server never see each other's data."""
    stem = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", request.node.name[:20]))
    return f"t_{stem.strip('_')}_{uuid4().hex[:8]}"
