"""rag_core.store.local_server without starting a server: where it lives and which port, from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_core.errors import ConfigError
from rag_core.paths import beam_rag_home
from rag_core.store.local_server import DEFAULT_PORT, LocalRedis


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BEAM_RAG_REDIS_PORT", raising=False)
    monkeypatch.setenv("BEAM_RAG_HOME", str(tmp_path / "home"))
    assert beam_rag_home() == tmp_path / "home"
    assert LocalRedis().data_dir == (tmp_path / "home" / "redis").resolve()
    assert LocalRedis().port == DEFAULT_PORT
    monkeypatch.setenv("BEAM_RAG_REDIS_PORT", "7001")
    assert LocalRedis().url == "redis://127.0.0.1:7001/0"
    monkeypatch.setenv("BEAM_RAG_REDIS_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="BEAM_RAG_REDIS_PORT"):
        LocalRedis()
    monkeypatch.delenv("BEAM_RAG_HOME")
    assert beam_rag_home() == Path.home() / ".beam-rag"
