"""rag_core.embeddings.loading: the dimension read from a model folder, no model loaded."""

from __future__ import annotations

import json
from pathlib import Path

from rag_core.embeddings import EmbeddingConfig, embedding_dimension


def _write_model_folder(folder: Path, modules: list[dict], configs: dict[str, dict], hidden_size: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "config.json").write_text(json.dumps({"hidden_size": hidden_size}))
    for sub, content in configs.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / "config.json").write_text(json.dumps(content))
    return folder


TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}


class TestEmbeddingDimension:
    def test_packaged_model_without_loading_it(self) -> None:
        assert embedding_dimension(EmbeddingConfig()) == 384

    def test_pooling_dimension(self, tmp_path: Path) -> None:
        folder = _write_model_folder(tmp_path / "m", [
            TRANSFORMER, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ], {"1_Pooling": {"word_embedding_dimension": 96, "pooling_mode_mean_tokens": True}})
        assert embedding_dimension(EmbeddingConfig(model=str(folder))) == 96

    def test_pooling_modes_concatenate(self, tmp_path: Path) -> None:
        folder = _write_model_folder(tmp_path / "m", [
            TRANSFORMER, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ], {"1_Pooling": {"word_embedding_dimension": 96, "pooling_mode_mean_tokens": True,
                          "pooling_mode_cls_token": True, "pooling_mode_max_tokens": False}})
        assert embedding_dimension(EmbeddingConfig(model=str(folder))) == 192

    def test_last_dense_layer_wins(self, tmp_path: Path) -> None:
        folder = _write_model_folder(tmp_path / "m", [
            TRANSFORMER,
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        ], {"1_Pooling": {"word_embedding_dimension": 96, "pooling_mode_mean_tokens": True},
            "2_Dense": {"in_features": 96, "out_features": 32}})
        assert embedding_dimension(EmbeddingConfig(model=str(folder))) == 32

    def test_hidden_size_when_modules_say_nothing(self, tmp_path: Path) -> None:
        folder = _write_model_folder(tmp_path / "m", [TRANSFORMER], {}, hidden_size=72)
        assert embedding_dimension(EmbeddingConfig(model=str(folder))) == 72
