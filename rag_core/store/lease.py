"""The build lease: one build of a knowledge base at a time, and only its holder publishes.

A build takes ``beamrag:lease:{alias}`` with ``SET NX PX`` (the value names its token,
version and start time) and renews it while it runs; a process that dies stops renewing,
so its lease expires and the next build takes it over (at once when the lease names a
process on this machine that is gone, or a build of this process that has ended). Publishing and pruning check the
token atomically (:meth:`BuildLease.fenced`: ``WATCH`` the lease, compare, ``MULTI``), so
a build whose lease was lost can neither move the alias nor drop a version.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from rag_core.errors import BuildInProgressError, PublishRefusedError
from rag_core.store.schema import KEY_ROOT, validate_index_name
from rag_core.validation import check_number

__all__ = ["BuildLease", "lease_key"]

# Compare-and-renew / compare-and-delete: only the holder's token touches the lease.
_RENEW_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_TAKE_OVER_LUA = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', "
                  "ARGV[3]) end return false")
_RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def lease_key(alias: str) -> str:
    """
    >>> lease_key("docs")
    'beamrag:lease:docs'
    """
    return f"{KEY_ROOT}:lease:{validate_index_name(alias)}"


# Tokens of the leases this process holds right now: a lease that names this process but
# is not here belongs to a build of ours that ended without releasing it (Redis was down).
_HELD: set[str] = set()


def _holder_is_dead(raw: Any) -> bool:
    """Whether the lease ``raw`` names a build on this machine whose process (or run) has ended."""
    try:
        held = json.loads(raw)
        host, pid, token = held["host"], int(held["pid"]), held["token"]
    except (TypeError, ValueError, KeyError):
        return False
    if host != socket.gethostname():
        return False  # another machine's build: only its expiry says it died
    if pid == os.getpid():
        return token not in _HELD
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _describe(raw: Any) -> str:
    try:
        held = json.loads(raw)
        return f"{held['version']} (started {held['started_at']})"
    except (TypeError, ValueError, KeyError):
        return "another build"


@dataclass
class BuildLease:
    """One build's hold on ``alias`` (see the module docstring). The caller owns ``client``."""

    client: Any
    alias: str
    version: str
    ttl_s: float = 60.0
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    host: str = field(default_factory=socket.gethostname)  # where the build's driver runs
    pid: int = field(default_factory=os.getpid)

    def __post_init__(self) -> None:
        check_number("lease ttl_s", self.ttl_s, minimum=0.1)
        self.key = lease_key(self.alias)
        self.value = json.dumps({"token": self.token, "version": self.version, "started_at": self.started_at,
                                 "host": self.host, "pid": self.pid})
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, wait_s: float = 0.0) -> "BuildLease":
        """Take the lease, waiting up to ``wait_s``; ``BuildInProgressError`` naming the holder if it stays taken."""
        check_number("--wait-for-lock", wait_s, minimum=0)
        deadline = time.monotonic() + wait_s
        ttl_ms = int(self.ttl_s * 1000)
        while not self.client.set(self.key, self.value, nx=True, px=ttl_ms):
            raw = self.client.get(self.key)
            if raw is not None and _holder_is_dead(raw) and self.client.eval(
                    _TAKE_OVER_LUA, 1, self.key, raw, self.value, ttl_ms):
                break  # its build ended without releasing (e.g. Redis was down): take it over now
            if time.monotonic() >= deadline:
                holder = _describe(raw)
                raise BuildInProgressError(
                    f"Index {self.alias!r} is being built by {holder}; wait for it, or rerun with "
                    "--wait-for-lock SECONDS")
            time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
        _HELD.add(self.token)
        return self

    @property
    def identity(self) -> tuple[str, str, str, int]:
        """What another process needs to act as this holder (the publish step): token, start, host, pid."""
        return self.token, self.started_at, self.host, self.pid

    def held(self) -> bool:
        raw = self.client.get(self.key)
        return raw is not None and (raw.decode() if isinstance(raw, bytes) else raw) == self.value

    def renew(self) -> bool:
        """Extend the lease by ``ttl_s``; False when it was lost (expired and taken)."""
        return bool(self.client.eval(_RENEW_LUA, 1, self.key, self.value, int(self.ttl_s * 1000)))

    def start_renewing(self, client_factory: Callable[[], Any]) -> None:
        """Renew every ``ttl_s / 3`` from a daemon thread with a client of its own, until :meth:`release`."""
        def loop() -> None:
            client = client_factory()
            try:
                while not self._stop.wait(self.ttl_s / 3):
                    try:
                        client.eval(_RENEW_LUA, 1, self.key, self.value, int(self.ttl_s * 1000))
                    except Exception:  # a blip: the next tick retries; publish checks the token anyway
                        pass
            finally:
                client.close()

        self._renewer = threading.Thread(target=loop, name=f"lease-{self.alias}", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        _HELD.discard(self.token)
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self.client.eval(_RELEASE_LUA, 1, self.key, self.value)

    def fenced(self, what: str, commands: Callable[[Any], None]) -> None:
        """Run ``commands(pipe)`` in one MULTI/EXEC only while this build holds the lease."""
        import redis

        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.key)
                raw = pipe.get(self.key)
                if raw is None or (raw.decode() if isinstance(raw, bytes) else raw) != self.value:
                    raise PublishRefusedError(
                        f"Refusing to {what}: this build of {self.alias!r} ({self.version}) lost its build "
                        f"lease to {_describe(raw) if raw else 'nobody (it expired)'}")
                pipe.multi()
                commands(pipe)
                pipe.execute()
            except redis.WatchError:
                raise PublishRefusedError(
                    f"Refusing to {what}: the build lease of {self.alias!r} changed hands meanwhile") from None
