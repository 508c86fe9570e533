"""rag_core.validation: one wording for every bad number; a bool is never a number."""

from __future__ import annotations

from typing import Any

import pytest

from rag_core.errors import ConfigError
from rag_core.validation import check_int, check_number, check_optional_int, check_positive_int, is_number


class TestCheckInt:
    @pytest.mark.parametrize("value, bounds, message", [
        (True, {}, "n must be an int, got True"),
        (1.0, {}, "n must be an int, got 1.0"),
        ("3", {}, "n must be an int, got '3'"),
        (0, {"minimum": 1}, "n must be an int >= 1, got 0"),
        (9, {"maximum": 8}, "n must be an int <= 8, got 9"),
        (9, {"minimum": 1, "maximum": 8}, "n must be an int in [1, 8], got 9"),
    ])
    def test_refused_with_the_bounds_in_the_message(self, value: Any, bounds: dict, message: str) -> None:
        with pytest.raises(ConfigError) as info:
            check_int("n", value, **bounds)
        assert str(info.value) == message

    def test_bounds_are_inclusive(self) -> None:
        assert check_int("n", 1, minimum=1, maximum=1) == 1

    def test_positive_and_optional(self) -> None:
        assert check_positive_int("n", 3) == 3
        with pytest.raises(ConfigError, match=r"n must be an int >= 1, got 0"):
            check_positive_int("n", 0)
        assert check_optional_int("n", None, minimum=1) is None
        with pytest.raises(ConfigError, match=r"n must be an int >= 1, got False"):
            check_optional_int("n", False, minimum=1)


class TestCheckNumber:
    @pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), True, "0.5", None])
    def test_not_a_finite_number(self, value: Any) -> None:
        assert not is_number(value)
        with pytest.raises(ConfigError, match="x must be a finite number, got"):
            check_number("x", value)

    def test_ints_and_floats_within_bounds(self) -> None:
        assert is_number(0) and is_number(-2.5)
        assert check_number("x", 2, minimum=0, maximum=2) == 2
        with pytest.raises(ConfigError, match=r"x must be a finite number in \[0, 1\], got 1\.5"):
            check_number("x", 1.5, minimum=0, maximum=1)
