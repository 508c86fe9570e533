"""rag_core.embeddings.threads: cores divided between workers."""

from __future__ import annotations

import pytest

from rag_core.embeddings import available_cpus, default_threads
from rag_core.errors import ConfigError


class TestDefaultThreads:
    def test_cores_are_divided_between_workers(self) -> None:
        cores = available_cpus()
        assert cores >= 1
        assert default_threads() == cores
        assert default_threads(workers=2) == max(1, cores // 2)
        assert default_threads(workers=cores * 4) == 1

    @pytest.mark.parametrize("workers", [0, -2])
    def test_workers_must_be_positive(self, workers: int) -> None:
        with pytest.raises(ConfigError, match="workers must be an int >= 1"):
            default_threads(workers)
