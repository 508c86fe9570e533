"""rag_core.retry: the one retry policy (no server: the errors are raised by hand)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import redis

from rag_core.errors import ConfigError, RedisUnavailableError
from rag_core.retry import NO_RETRY, RetriesExhaustedError, RetryPolicy, call_with_retries


class Flaky:
    """Raises each of ``errors`` in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


FAST = RetryPolicy(max_retries=3, backoff_s=0.001, max_backoff_s=0.002)


class TestRetryPolicy:
    def test_delays_double_up_to_the_cap(self) -> None:
        assert RetryPolicy(max_retries=5, backoff_s=0.5, max_backoff_s=3.0).delays() == (0.5, 1.0, 2.0, 3.0, 3.0)
        assert NO_RETRY.delays() == () and NO_RETRY.attempts == 1

    def test_is_frozen_hashable_and_picklable(self) -> None:
        with pytest.raises(AttributeError):
            FAST.max_retries = 9  # type: ignore[misc]
        assert pickle.loads(pickle.dumps(FAST)) == FAST and hash(FAST) == hash(RetryPolicy(3, 0.001, 0.002))
        assert FAST.with_max_retries(0).attempts == 1 and FAST.max_retries == 3

    def test_authentication_errors_are_not_transient(self) -> None:
        assert FAST.is_transient(redis.ConnectionError()) and FAST.is_transient(TimeoutError())
        assert not FAST.is_transient(redis.AuthenticationError()) and not FAST.is_transient(ValueError())

    @pytest.mark.parametrize("kwargs, match", [
        ({"max_retries": -1}, "max_retries"), ({"max_retries": True}, "max_retries"),
        ({"backoff_s": 0}, "backoff_s"), ({"backoff_s": float("nan")}, "backoff_s"),
        ({"backoff_s": 1.0, "max_backoff_s": 0.5}, "max_backoff_s"), ({"transient": ()}, "transient"),
        ({"transient": (ValueError, "x")}, "transient"), ({"permanent": [KeyError]}, "permanent"),
    ])
    def test_invalid(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            RetryPolicy(**kwargs)


class TestCallWithRetries:
    def test_transient_errors_are_retried_until_success(self) -> None:
        fn = Flaky(redis.ConnectionError("down"), redis.TimeoutError("slow"))
        seen: list[tuple[int, str, float]] = []
        assert call_with_retries(fn, FAST, on_retry=lambda n, e, d: seen.append((n, type(e).__name__, d))) == "ok"
        assert fn.calls == 3 and seen == [(1, "ConnectionError", 0.001), (2, "TimeoutError", 0.002)]

    def test_gives_up_after_the_budget_naming_the_operation_not_the_error_text(self) -> None:
        fn = Flaky(*[redis.ConnectionError("password=hunter2")] * 10)
        with pytest.raises(RetriesExhaustedError) as info:
            call_with_retries(fn, FAST, what="Writing to Redis at redis://h:1/0")
        assert fn.calls == 4 and info.value.attempts == 4
        assert str(info.value) == "Writing to Redis at redis://h:1/0 failed after 4 attempts: ConnectionError"
        assert isinstance(info.value, RedisUnavailableError) and "hunter2" in str(info.value.last_error)

    def test_no_retry_tries_once(self) -> None:
        fn = Flaky(ConnectionError("refused"))
        with pytest.raises(RedisUnavailableError, match="failed after 1 attempt: ConnectionError"):
            call_with_retries(fn, NO_RETRY, what="Pinging")
        assert fn.calls == 1

    @pytest.mark.parametrize("error", [redis.AuthenticationError("no"), redis.ResponseError("WRONGTYPE"),
                                       ValueError("bug")])
    def test_other_errors_pass_through_at_once(self, error: BaseException) -> None:
        fn = Flaky(error)
        with pytest.raises(type(error)):
            call_with_retries(fn, FAST)
        assert fn.calls == 1

    def test_the_policy_decides_what_is_transient(self) -> None:
        fn = Flaky(KeyError("k"))
        policy = RetryPolicy(max_retries=1, backoff_s=0.001, transient=(KeyError,), permanent=())
        assert call_with_retries(fn, policy) == "ok" and fn.calls == 2


def test_busy_loading_and_tryagain_replies_are_retried_other_replies_are_not():
    import redis

    from rag_core.retry import RetryPolicy, call_with_retries, is_transient_reply

    replies = iter([redis.ResponseError("BUSY Redis is busy running a script."),
                    redis.ResponseError("Command # 1 (FT.SEARCH i *) of pipeline caused error: TRYAGAIN x"),
                    "ok"])

    def flaky() -> str:
        value = next(replies)
        if isinstance(value, Exception):
            raise value
        return value

    assert call_with_retries(flaky, RetryPolicy(max_retries=2, backoff_s=0.001)) == "ok"
    for text in ("OOM command not allowed when used memory > 'maxmemory'", "NOPERM no permissions",
                 "Unknown index name", "MISCONF Redis is configured to save RDB snapshots"):
        assert not is_transient_reply(redis.ResponseError(text))
        assert not RetryPolicy().is_transient(redis.ResponseError(text))
    assert RetryPolicy().is_transient(redis.ResponseError("LOADING Redis is loading the dataset in memory"))
