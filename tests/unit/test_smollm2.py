"""rag_core.smollm2: the packaged GGUF's cached conversion, checked before it is used."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_core.errors import ModelNotAvailableError
from rag_core.smollm2 import SMOLLM2_CACHE_NAME, ensure_smollm2_cached


class TestCache:
    def test_incomplete_cache_folder_is_an_error(self, tmp_path: Path) -> None:
        (tmp_path / SMOLLM2_CACHE_NAME).mkdir()
        with pytest.raises(ModelNotAvailableError, match="not a complete model folder"):
            ensure_smollm2_cached(tmp_path)
