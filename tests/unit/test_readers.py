"""rag_core.readers: bounded line reading, whatever the block size."""

from __future__ import annotations

import io

import pytest

from rag_core.readers import bounded_lines


class TestBoundedLines:
    @pytest.mark.parametrize("data, limit, expected", [
        (b"", 4, []),
        (b"\n\n", 4, [(b"", 0), (b"", 0)]),
        (b"abcd\nabcde\n", 4, [(b"abcd", 4), (None, 5)]),
        (b"ab\r\ncd", 4, [(b"ab\r", 3), (b"cd", 2)]),
        (b"x" * 10, 4, [(None, 10)]),
    ])
    def test_lines(self, data: bytes, limit: int, expected: list[tuple[bytes | None, int]]) -> None:
        for block in (1, 3, 1 << 20):
            assert list(bounded_lines(io.BytesIO(data), limit, block_size=block)) == expected
