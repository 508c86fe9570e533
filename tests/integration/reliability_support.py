"""Helpers for the fault, security and bad-input tests: dedicated Redis servers
(own folder, own port, free to kill), small corpora and index snapshots.

Tests that kill or reconfigure Redis never touch the session server: each one
starts its own ``LocalRedis`` through :func:`dedicated_redis`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rag_core.errors import LocalRedisError
from rag_core.store.catalog import IndexCatalog
from rag_core.store.info import ft_info
from rag_core.store.local_server import LocalRedis
from rag_core.store.schema import KEY_ROOT


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dedicated_redis(folder: Path, **kwargs: Any) -> Iterator[LocalRedis]:
    """A started LocalRedis of its own (free port, ``folder``), stopped afterwards.

    Without a ``password`` it runs without auth (``require_password=False``): the fault
    and TLS tests pass ``server.url`` alone; authentication has its own tests.
    """
    if "password" not in kwargs:
        kwargs.setdefault("require_password", False)
    server = LocalRedis(data_dir=folder, port=free_port(), **kwargs)
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        except LocalRedisError:
            server.kill()


def raw_client(server: LocalRedis, **kwargs: Any) -> redis.Redis:
    """A client that fails at once (no retries): for watchers and assertions."""
    options: dict[str, Any] = dict(host=server.host, port=server.port, password=server.auth_password(),
                                   socket_connect_timeout=1.0, socket_timeout=5.0, retry=Retry(NoBackoff(), 0))
    options.update(kwargs)
    return redis.Redis(**options)


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def corpus(n: int, prefix: str = "doc") -> list[dict[str, Any]]:
    """``n`` short, distinct documents (one chunk each) with a little metadata."""
    topics = ["rivers", "volcanoes", "glaciers", "deserts", "forests", "reefs", "caves"]
    return [{"id": f"{prefix}{i:04d}", "title": f"Note {i}",
             "text": f"Note {i} describes {topics[i % len(topics)]} number {i}, measured in year {1900 + i}.",
             "metadata": {"topic": topics[i % len(topics)], "n": i}} for i in range(n)]


@dataclass(frozen=True)
class IndexSnapshot:
    """What a knowledge base serves: its version and exactly which chunks it holds."""

    index: str
    num_docs: int
    chunk_ids: tuple[str, ...]  # sorted, from the keys under the live version's prefix
    content: tuple[tuple[str, str, str], ...]  # (chunk_id, content_hash, text), sorted

    @property
    def duplicates(self) -> int:
        return len(self.chunk_ids) - len(set(self.chunk_ids))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def snapshot(client: Any, alias: str) -> IndexSnapshot:
    catalog = IndexCatalog(client, alias)
    record = catalog.current()
    keys = [_s(k) for k in client.scan_iter(match=record.prefix + "*", count=1000)]
    content = []
    for key in keys:
        chunk_id, content_hash, text = client.hmget(key, "chunk_id", "content_hash", "text")
        content.append((_s(chunk_id), _s(content_hash), _s(text)))
    info = ft_info(client, alias) or {}
    return IndexSnapshot(record.index, int(info.get("num_docs", 0)),
                         tuple(sorted(k[len(record.prefix):] for k in keys)), tuple(sorted(content)))


def orphans(client: Any, alias: str) -> dict[str, Any]:
    """Anything of ``alias`` that no ready catalog version owns: keys, FT indexes, building records."""
    catalog = IndexCatalog(client, alias)
    versions = catalog.versions()
    ready = [r for r in versions if r.state == "ready"]
    prefixes = tuple(r.prefix for r in ready)
    keys = [_s(k) for k in client.scan_iter(match=f"{KEY_ROOT}:{alias}:*", count=1000)]
    indexes = [_s(i) for i in client.execute_command("FT._LIST") if _s(i).startswith(alias + "__")]
    return {
        "keys": sorted(k for k in keys if not k.startswith(prefixes)),
        "indexes": sorted(i for i in indexes if i not in {r.index for r in ready}),
        "building": sorted(r.version for r in versions if r.state != "ready"),
    }


class AliasWatcher:
    """Polls ``FT.INFO <alias>`` from a thread; records ``(index, num_docs)``, ``down`` or
    ``missing``, with the time each question was asked in ``asked_at``."""

    def __init__(self, server: LocalRedis, alias: str, period_s: float = 0.02):
        self.server, self.alias, self.period_s = server, alias, period_s
        self.seen: list[tuple[str, int] | str] = []
        self.asked_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            client = raw_client(self.server, socket_timeout=1.0)
            self.asked_at.append(time.monotonic())
            try:
                info = ft_info(client, self.alias)
                self.seen.append((_s(info["index_name"]), int(info["num_docs"])) if info else "missing")
            except redis.RedisError:
                self.seen.append("down")
            finally:
                client.close()
            time.sleep(self.period_s)

    def __enter__(self) -> "AliasWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def served(self, since: float = 0.0) -> set[tuple[str, int]]:
        """What the alias served, in answers to questions asked at or after ``since``."""
        return {s for s, t in zip(self.seen, self.asked_at) if isinstance(s, tuple) and t >= since}


def wait_for(condition: Callable[[], bool], timeout_s: float, period_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(period_s)
    return False
