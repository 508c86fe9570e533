"""Validation helpers for config dataclasses: one wording for every bad number.

``bool`` is a subclass of ``int`` in Python, so ``True`` would pass a plain
``isinstance(value, int)`` check; these helpers refuse it everywhere.

>>> check_int("top_k", 5, minimum=1)
5
>>> check_int("top_k", True, minimum=1)
Traceback (most recent call last):
...
rag_core.errors.ConfigError: top_k must be an int >= 1, got True
>>> check_number("score_threshold", 0.5, minimum=-1.0, maximum=1.0)
0.5
>>> check_number("backoff_s", float("nan"), minimum=0)
Traceback (most recent call last):
...
rag_core.errors.ConfigError: backoff_s must be a finite number >= 0, got nan
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from rag_core.errors import ConfigError

__all__ = ["check_int", "check_number", "check_optional_int", "check_positive_int", "is_number"]

_Num = TypeVar("_Num", int, float)


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def is_number(value: Any) -> bool:
    """A finite int or float, and not a bool.

    >>> is_number(1.5), is_number(True), is_number(float("inf")), is_number("1")
    (True, False, False, False)
    """
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` if it is an int (not a bool) within the bounds, else ``ConfigError``."""
    if (isinstance(value, bool) or not isinstance(value, int)
            or (minimum is not None and value < minimum) or (maximum is not None and value > maximum)):
        raise ConfigError(f"{name} must be an int{_bounds(minimum, maximum)}, got {value!r}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    """``check_int(name, value, minimum=1)``."""
    return check_int(name, value, minimum=1)


def check_optional_int(name: str, value: Any, *, minimum: int | None = None,
                       maximum: int | None = None) -> int | None:
    """``None``, or ``check_int``."""
    return None if value is None else check_int(name, value, minimum=minimum, maximum=maximum)


def check_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """``value`` if it is a finite number (not a bool) within the bounds, else ``ConfigError``."""
    if (not is_number(value) or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        raise ConfigError(f"{name} must be a finite number{_bounds(minimum, maximum)}, got {value!r}")
    return value
