"""How Redis calls are retried: one bounded, exponential backoff policy for every caller.

The writer, the search handler and the redis-py clients of
:class:`~rag_core.store.connection.RedisConnection` all retry with a
:class:`RetryPolicy`, shaped like Beam's ``apache_beam.ml.rag.utils.retry_with_backoff``:
at most ``max_retries`` retries after the first attempt, sleeping ``backoff_s``,
then twice that, ... capped at ``max_backoff_s``. Nothing retries forever, and a
policy is a frozen value, so sharing one (as a default) shares no state.

Example:
    >>> policy = RetryPolicy(max_retries=4, backoff_s=0.1, max_backoff_s=0.3)
    >>> policy.delays()
    (0.1, 0.2, 0.3, 0.3)
    >>> attempts = []
    >>> def flaky():
    ...     attempts.append(1)
    ...     if len(attempts) < 3:
    ...         raise ConnectionError("blip")
    ...     return "ok"
    >>> call_with_retries(flaky, RetryPolicy(max_retries=3, backoff_s=0.001), what="Pinging")
    'ok'
    >>> len(attempts)
    3
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from typing import Callable, TypeVar

import redis

from rag_core.errors import ConfigError, RedisUnavailableError
from rag_core.validation import check_int, check_number

__all__ = ["NO_RETRY", "PERMANENT_ERRORS", "TRANSIENT_ERRORS", "TRANSIENT_REPLIES", "RetriesExhaustedError",
           "RetryPolicy", "call_with_retries", "is_transient_reply", "refusal"]

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

# Errors a later attempt may not see: a dropped or refused connection, a timeout.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)
# Transient by type (redis.AuthenticationError is a redis.ConnectionError), but retrying
# cannot help: refused credentials stay refused.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (redis.AuthenticationError,)
# Error replies of a server that will answer shortly: a script or module command running
# (BUSY), a dataset loading (LOADING), a cluster slot moving (TRYAGAIN).
TRANSIENT_REPLIES = ("BUSY", "LOADING", "TRYAGAIN")
# A pipeline's error names the command first: "Command # 1 (...) of pipeline caused error: BUSY ...".
_TRANSIENT_REPLY = re.compile(rf"(?:^|caused error: )(?:{'|'.join(TRANSIENT_REPLIES)})\b")


def is_transient_reply(exc: BaseException) -> bool:
    """Whether ``exc`` is a Redis error reply that a later attempt may not see.

    >>> is_transient_reply(redis.ResponseError("BUSY Redis is busy running a script"))
    True
    >>> is_transient_reply(redis.ResponseError("Command # 2 (FT.SEARCH i) of pipeline caused error: TRYAGAIN"))
    True
    >>> is_transient_reply(redis.ResponseError("OOM command not allowed")), is_transient_reply(OSError("BUSY"))
    (False, False)
    """
    return isinstance(exc, redis.ResponseError) and bool(_TRANSIENT_REPLY.search(str(exc)))


_HINTS = (
    ("maxmemory", "Redis is out of memory: raise its maxmemory (or free memory), then rerun"),
    ("MISCONF", "Redis cannot save to disk: fix its disk or persistence settings, then rerun"),
    ("READONLY", "this Redis is a read-only replica: point --redis-url at the primary"),
)


def refusal(exc: BaseException) -> str:
    """A non-transient error reply as one line for a person, with what to do about it.

    A pipeline's error echoes the command with its arguments (document text, vectors):
    only the server's reply is kept.

    >>> refusal(redis.ResponseError("Command # 52 (HSET k text secret words) of pipeline caused error: "
    ...                             "command not allowed when used memory > 'maxmemory'."))
    "command not allowed when used memory > 'maxmemory' (Redis is out of memory: raise its maxmemory (or free memory), then rerun)"
    """
    reply = str(exc).rpartition("of pipeline caused error: ")[2].strip().split("\n", 1)[0].rstrip(".")
    hint = next((h for marker, h in _HINTS if marker in reply), None)
    return f"{reply} ({hint})" if hint else reply


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff on transient errors.

    Args:
        max_retries: retries after the first attempt (0: try once).
        backoff_s: the sleep before the first retry; each later one doubles.
        max_backoff_s: the longest sleep between two attempts.
        transient: the exception types worth another attempt.
        permanent: subclasses of ``transient`` that are never retried.
    """

    max_retries: int = 5
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    transient: tuple[type[BaseException], ...] = TRANSIENT_ERRORS
    permanent: tuple[type[BaseException], ...] = PERMANENT_ERRORS

    def __post_init__(self) -> None:
        check_int("max_retries", self.max_retries, minimum=0)
        if check_number("backoff_s", self.backoff_s, minimum=0) <= 0:
            raise ConfigError(f"backoff_s must be > 0, got {self.backoff_s!r}")
        check_number("max_backoff_s", self.max_backoff_s, minimum=self.backoff_s)
        for name in ("transient", "permanent"):
            kinds = getattr(self, name)
            if not isinstance(kinds, tuple) or not all(
                    isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
                raise ConfigError(f"{name} must be a tuple of exception types, got {kinds!r}")
        if not self.transient:
            raise ConfigError("transient must name at least one exception type")

    @property
    def attempts(self) -> int:
        """Calls made before giving up: the first one plus the retries."""
        return self.max_retries + 1

    def delays(self) -> tuple[float, ...]:
        """The sleep before each retry, in order."""
        return tuple(min(self.backoff_s * 2 ** n, self.max_backoff_s) for n in range(self.max_retries))

    def is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth another attempt under this policy: one of ``transient``,
        or an error reply of a busy or loading server (:func:`is_transient_reply`)."""
        if isinstance(exc, self.permanent):
            return False
        return isinstance(exc, self.transient) or is_transient_reply(exc)

    def with_max_retries(self, max_retries: int) -> "RetryPolicy":
        """The same policy with another retry budget (0: try once)."""
        return replace(self, max_retries=max_retries)


class RetriesExhaustedError(RedisUnavailableError):
    """Every attempt of a retried call failed with a transient error.

    ``str()`` names the operation, the attempts and the error type only (error texts
    may quote credentials); ``last_error`` is the last error itself.
    """

    def __init__(self, message: str, last_error: BaseException, attempts: int):
        super().__init__(message)
        self.last_error = last_error
        self.attempts = attempts


# Fail fast: for probes that must answer within a timeout, and callers that retry
# whole batches themselves.
NO_RETRY = RetryPolicy(max_retries=0)


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, *, what: str = "Calling Redis",
                      on_retry: Callable[[int, BaseException, float], None] | None = None) -> T:
    """``fn()``, retried under ``policy`` while it raises a transient error.

    Args:
        fn: the call; it must be safe to repeat (idempotent).
        policy: how often and how long to wait.
        what: the operation, for logs and the error, e.g. ``"Searching in Redis at redis://h:6379/0"``.
        on_retry: called as ``on_retry(retry_number, error, delay_s)`` before each sleep
            (e.g. to count retries in a Beam metric).

    Raises:
        RetriesExhaustedError: (a ``RedisUnavailableError``) every attempt failed with a
            transient error; the message is ``"<what> failed after N attempts: <error type>"``.
        Exception: any other error (and ``policy.permanent`` ones) at once, unchanged.
    """
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return fn()
        except BaseException as exc:
            if not policy.is_transient(exc):
                raise
            if attempt == policy.max_retries:
                plural = "s" if policy.attempts > 1 else ""
                raise RetriesExhaustedError(
                    f"{what} failed after {policy.attempts} attempt{plural}: {type(exc).__name__}",
                    exc, policy.attempts) from None
            delay = delays[attempt]
            if on_retry is not None:
                on_retry(attempt + 1, exc, delay)
            _LOG.warning("%s failed (%s); retry %d/%d in %.2fs", what, type(exc).__name__, attempt + 1,
                         policy.max_retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
