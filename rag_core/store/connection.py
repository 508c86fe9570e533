"""Redis connection settings that travel safely through a pipeline.

Credentials are split out of the URL and kept in fields excluded from ``repr``,
so pipeline display data, logs and error messages only ever see
``safe_url``; :func:`redact_url` is the one place a URL loses its secrets (user
info, ``?password=``, ``?username=``).

A password from a file, the environment or a secret manager travels as a
*reference* (:class:`PasswordFile`, :class:`PasswordEnv`, or Beam's
``apache_beam.utils.secret.GcpSecret``): pickled DoFns and the job graph carry
the reference, and the worker reads the password when its ``setup()`` builds the
client. Only a password typed into the URL travels itself (and is warned about).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from redis.backoff import AbstractBackoff

from rag_core.errors import ConfigError, RedisUnavailableError
from rag_core.retry import NO_RETRY, RetriesExhaustedError, RetryPolicy, call_with_retries
from rag_core.validation import check_number

_SCHEMES = ("redis", "rediss", "unix")
# Command-line flag -> field, for messages about the TLS files.
_TLS_FLAGS = {"--redis-ca-cert": "ssl_ca_certs", "--redis-client-cert": "ssl_certfile",
              "--redis-client-key": "ssl_keyfile"}
_UNPARSABLE_URL = (
    "Invalid Redis URL: it does not parse as scheme://[user:password@]host:port/db. "
    "Percent-encode '/', '?', '#' and '@' in the username and password "
    "(or pass them in REDIS_USERNAME / REDIS_PASSWORD)")
# Query arguments redis-py reads as credentials: never kept in a URL, never shown.
_SECRET_QUERY_KEYS = ("password", "username")


def redact_url(url: str) -> str:
    """``url`` without anything secret: no user info, no ``password``/``username`` query argument.

    Example:
        >>> redact_url("redis://u:pw@h:1/0?password=x&socket_timeout=2")
        'redis://h:1/0?socket_timeout=2'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = _strip_secret_query(parts.query)[0]
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _strip_secret_query(query: str) -> tuple[str, dict[str, str]]:
    """``(query without credentials, the credentials it held)``."""
    kept, found = [], {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() in _SECRET_QUERY_KEYS:
            found[key.lower()] = value
        else:
            kept.append((key, value))
    return urlencode(kept), found


class PasswordFile:
    """A password kept in a file (its first line), read where the client is built.

    Mirrors Beam's ``apache_beam.utils.secret.Secret`` interface (``get_str``; the
    cached value is dropped when pickled) without importing Beam.

    Example:
        >>> PasswordFile("/run/secrets/redis")
        PasswordFile('/run/secrets/redis')
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._cached: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and getattr(other, "path") == self.path

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.path))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cached": None}

    def get_str(self, cacheSecret: bool = False) -> str:  # noqa: N803 (Beam's Secret spelling)
        if cacheSecret and self._cached is not None:
            return self._cached
        try:
            text = open(self.path, encoding="utf-8").read()
        except OSError as exc:
            raise ConfigError(f"Cannot read the Redis password file {self.path}: {exc.strerror or exc}") from None
        value = text.splitlines()[0].strip() if text.strip() else ""
        if not value:
            raise ConfigError(f"The Redis password file {self.path} is empty")
        if cacheSecret:
            self._cached = value
        return value


class PasswordEnv(PasswordFile):
    """A password in an environment variable, read where the client is built (the worker)."""

    def __init__(self, name: str):
        super().__init__(name)

    def get_str(self, cacheSecret: bool = False) -> str:  # noqa: N803
        value = os.environ.get(self.path)
        if not value:
            raise ConfigError(f"${self.path} is not set where this Redis client runs (on a remote worker, "
                              "use --redis-password-secret)")
        return value


@dataclass(frozen=True)
class RedisConnection:
    """How to reach Redis. Build it with ``from_url`` or ``from_env``.

    Example:
        >>> conn = RedisConnection.from_url("redis://alice:s3cret@localhost:6379/0")
        >>> conn.safe_url
        'redis://localhost:6379/0'
        >>> "s3cret" in repr(conn)
        False
    """

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # A reference resolved by client() (PasswordFile, PasswordEnv, Beam's GcpSecret): pickles without the value.
    password_secret: Any = field(default=None, repr=False)
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True
    socket_timeout: float = 30.0
    connect_timeout: float = 5.0
    # The client's own retries of a command (see client()); frozen, so a shared default is safe.
    retry: RetryPolicy = RetryPolicy(max_retries=5, backoff_s=0.1, max_backoff_s=5.0)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in _SCHEMES:
            raise ConfigError(
                f"Redis URL must start with redis://, rediss:// or unix://, got {self.safe_url!r}"
            )
        if parts.username or parts.password or _strip_secret_query(parts.query)[1]:
            raise ConfigError("Pass credentials through RedisConnection.from_url, not in url")
        if self.password_secret is not None and not callable(getattr(self.password_secret, "get_str", None)):
            raise ConfigError("password_secret must have get_str() (e.g. apache_beam.utils.secret.GcpSecret)")
        for name in ("connect_timeout", "socket_timeout"):
            if check_number(name, getattr(self, name), minimum=0) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError("retry must be a rag_core.retry.RetryPolicy")
        tls_files = [flag for flag, value in _TLS_FLAGS.items() if getattr(self, value)]
        if tls_files and not self.uses_tls:
            # Fail closed: TLS settings with a plain URL would silently send data in clear text.
            raise ConfigError(
                f"{', '.join(tls_files)} given but the Redis URL {self.safe_url!r} does not use TLS: "
                "use a rediss:// URL")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> "RedisConnection":
        """Parse a Redis URL, moving any user info into the credential fields.

        A URL whose user info was not percent-encoded (a ``/``, ``?`` or ``#`` in the
        password) is refused without echoing it, since part of it is the password.
        """
        if not isinstance(url, str):
            raise ConfigError(f"Redis URL must be a string, got {type(url).__name__}")
        parts = urlsplit(url.strip())
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(_UNPARSABLE_URL) from None
        if "@" in parts.path + parts.query + parts.fragment:
            raise ConfigError(_UNPARSABLE_URL)
        query, in_query = _strip_secret_query(parts.query)
        username = unquote(parts.username) if parts.username else in_query.get("username") or None
        password = in_query.get("password") or (unquote(parts.password) if parts.password else None)
        netloc = parts.hostname or ""
        if parts.hostname and ":" in parts.hostname:  # IPv6 literal
            netloc = f"[{parts.hostname}]"
        if port:
            netloc = f"{netloc}:{port}"
        clean = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        kwargs: dict[str, Any] = {"url": clean, "username": username, "password": password}
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    @classmethod
    def from_env(
        cls, url: str | None = None, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> "RedisConnection":
        """``url`` (or ``REDIS_URL``) plus credentials and TLS files from the environment.

        Reads ``REDIS_USERNAME``, ``REDIS_PASSWORD``, ``REDIS_SSL_CA_CERTS``,
        ``REDIS_SSL_CERTFILE`` and ``REDIS_SSL_KEYFILE``; explicit arguments win.
        From the process environment (``env`` not given) the password becomes a
        :class:`PasswordEnv` reference, read again where the client is built.
        """
        real_env = env is None
        env = os.environ if env is None else env
        url = url or env.get("REDIS_URL")
        if not url:
            raise ConfigError("No Redis URL: pass --redis-url or set REDIS_URL")
        tls = {k: v for k, v in overrides.items() if k.startswith("ssl_")}
        conn = cls.from_url(url, **{k: v for k, v in overrides.items() if k not in tls})
        fill = {
            "username": env.get("REDIS_USERNAME"),
            "password": env.get("REDIS_PASSWORD"),
        }
        if conn.uses_tls:  # the TLS variables only apply to rediss:// URLs
            fill.update(ssl_ca_certs=env.get("REDIS_SSL_CA_CERTS"), ssl_certfile=env.get("REDIS_SSL_CERTFILE"),
                        ssl_keyfile=env.get("REDIS_SSL_KEYFILE"))
        fill.update({k: v for k, v in tls.items() if v is not None})
        if real_env and fill["password"]:
            fill["password"] = None
            if conn.password is None and conn.password_secret is None:
                fill["password_secret"] = PasswordEnv("REDIS_PASSWORD")
        return replace(conn, **{k: v for k, v in fill.items() if v and getattr(conn, k) is None})

    @property
    def safe_url(self) -> str:
        """The URL without user info or credential arguments: the only form that may be logged."""
        return redact_url(self.url)

    def resolved_password(self) -> str | None:
        """The password to send: the literal one, else the reference read now (cached per process)."""
        if self.password is not None or self.password_secret is None:
            return self.password
        return str(self.password_secret.get_str(cacheSecret=True))

    @property
    def uses_tls(self) -> bool:
        return self.url.startswith("rediss://")

    def client(self, retry: RetryPolicy | None = None, **kwargs: Any) -> "Any":
        """A new redis-py client that retries each command under ``retry`` (default ``self.retry``).

        Pass :data:`rag_core.retry.NO_RETRY` where the caller retries whole idempotent
        batches itself (the writer, the search handler) or must fail fast (``check``).
        """
        import redis
        from redis.retry import Retry

        policy = self.retry if retry is None else retry
        options: dict[str, Any] = {
            "username": self.username,
            "password": self.resolved_password(),
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry": Retry(_PolicyBackoff(policy), policy.max_retries, supported_errors=policy.transient),
            "retry_on_error": list(policy.transient) if policy.max_retries else [],
            "health_check_interval": 30,
            # RESP2: search replies parse the same way everywhere (redis-py, redisvl).
            "protocol": 2,
        }
        if self.uses_tls:
            options.update(
                ssl_ca_certs=self.ssl_ca_certs,
                ssl_certfile=self.ssl_certfile,
                ssl_keyfile=self.ssl_keyfile,
                ssl_check_hostname=self.ssl_check_hostname,
            )
        options.update(kwargs)
        return redis.Redis.from_url(self.url, **options)

    def check(self) -> None:
        """Ping once and raise a clear error naming the URL, within about ``connect_timeout``.

        The probe is a client of its own under :data:`~rag_core.retry.NO_RETRY` and with a
        short read timeout, so a down or silent server fails in seconds (retries would
        turn the check into a long wait).
        """
        import redis

        for flag, attr in _TLS_FLAGS.items():
            path = getattr(self, attr)
            if path and not os.path.isfile(path):
                raise ConfigError(f"{flag} {path!r} is not a file")
        probe = self.client(retry=NO_RETRY,
                            socket_timeout=min(self.socket_timeout, max(self.connect_timeout, 1.0)))
        try:
            call_with_retries(probe.ping, NO_RETRY, what=f"Pinging Redis at {self.safe_url}")
        except redis.AuthenticationError:
            raise RedisUnavailableError(
                f"Redis at {self.safe_url} refused the credentials (check the username and password "
                "given by --redis-password-file, REDIS_USERNAME / REDIS_PASSWORD or the URL)") from None
        except redis.ResponseError as exc:
            text = _redact(str(exc), self)
            if "NOAUTH" in text or "NOPERM" in text or "WRONGPASS" in text:
                raise RedisUnavailableError(f"Redis at {self.safe_url} refused the connection: {text}") from None
            raise
        except RetriesExhaustedError as exc:
            raise self._unreachable(exc.last_error) from None
        except OSError as exc:  # e.g. a TLS file the SSL layer cannot use
            raise self._unreachable(exc) from None
        finally:
            probe.close()

    def _unreachable(self, error: BaseException) -> RedisUnavailableError:
        text = _redact(str(error), self).strip().rstrip(".")
        if "SSL" in text or "certificate" in text.lower():
            hint = ("TLS handshake failed: check --redis-ca-cert (the CA that signed the server's "
                    "certificate) and, for mutual TLS, --redis-client-cert / --redis-client-key.")
        else:
            hint = "Start the local server with `beam-rag redis start`, or pass --redis-url / set REDIS_URL."
        return RedisUnavailableError(f"Cannot reach Redis at {self.safe_url}: {text}. {hint}")


class _PolicyBackoff(AbstractBackoff):
    """A redis-py backoff that sleeps what a :class:`RetryPolicy` says (redis-py counts failures from 1)."""

    def __init__(self, policy: RetryPolicy):
        self._delays = policy.delays()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PolicyBackoff) and other._delays == self._delays

    def __hash__(self) -> int:
        return hash(self._delays)

    def compute(self, failures: int) -> float:
        return self._delays[min(failures, len(self._delays)) - 1] if self._delays else 0.0


def _redact(text: str, conn: RedisConnection) -> str:
    """Remove the password (as typed, or percent-encoded as in a URL) from a message."""
    try:
        password = conn.resolved_password()
    except Exception:  # noqa: BLE001 - a message is being built; an unreadable reference has nothing to hide
        password = None
    if password:
        for form in sorted({password, quote(password, safe="")}, key=len, reverse=True):
            text = text.replace(form, "***")
    return text
