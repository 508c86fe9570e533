"""rag_core.embeddings.config: EmbeddingConfig validation, its description and what is comparable."""

from __future__ import annotations

from rag_core.embeddings.compatibility import describe, is_comparable

import json
import pickle
from pathlib import Path

import pytest

from rag_core.embeddings import (
    BACKENDS, DEFAULT_EMBEDDING_MODEL, EmbeddingBackend, EmbeddingConfig, resolve_embedding_model,
)
from rag_core.errors import ConfigError


class TestEmbeddingConfig:
    def test_defaults(self) -> None:
        config = EmbeddingConfig()
        assert (config.model, config.backend, config.batch_size, config.normalize) == (
            DEFAULT_EMBEDDING_MODEL, "torch", 32, True)
        assert (config.max_seq_length, config.threads, config.cache_dir) == (256, None, None)
        assert config.resolved_model == resolve_embedding_model(DEFAULT_EMBEDDING_MODEL)

    @pytest.mark.parametrize("backend, family", [("torch", "fp32"), ("onnx", "fp32"), ("onnx-int8", "int8")])
    def test_backend_family(self, backend: str, family: str) -> None:
        assert EmbeddingConfig(backend=backend).backend_family == family  # type: ignore[arg-type]

    def test_backend_is_an_enum_that_reads_as_its_value(self) -> None:
        config = EmbeddingConfig(backend="onnx-int8")  # type: ignore[arg-type]
        assert config.backend is EmbeddingBackend.ONNX_INT8
        assert config == EmbeddingConfig(backend=EmbeddingBackend.ONNX_INT8)
        assert f"{config.backend}" == "onnx-int8" and config.backend == "onnx-int8"
        assert BACKENDS == ("torch", "onnx", "onnx-int8")

    def test_every_backend_has_a_family(self) -> None:
        assert {EmbeddingConfig(backend=b).backend_family for b in BACKENDS} == {"fp32", "int8"}

    @pytest.mark.parametrize("backend", ["", "TORCH", "onnx_int8", "int8", "openvino", None])
    def test_unknown_backend(self, backend: object) -> None:
        with pytest.raises(ConfigError, match="unknown embedding backend .*torch, onnx, onnx-int8"):
            EmbeddingConfig(backend=backend)  # type: ignore[arg-type]

    @pytest.mark.parametrize("field", ["batch_size", "max_seq_length", "threads"])
    @pytest.mark.parametrize("value", [0, -1, 1.5, "8", True])
    def test_counts_must_be_positive_integers(self, field: str, value: object) -> None:
        with pytest.raises(ConfigError, match=f"{field} must be an int >= 1"):
            EmbeddingConfig(**{field: value})  # type: ignore[arg-type]

    def test_optional_counts_accept_none(self) -> None:
        config = EmbeddingConfig(max_seq_length=None, threads=None)
        assert config.max_seq_length is None and config.threads is None

    @pytest.mark.parametrize("value", [1, 0, "yes", None])
    def test_normalize_must_be_a_bool(self, value: object) -> None:
        with pytest.raises(ConfigError, match="normalize must be True or False"):
            EmbeddingConfig(normalize=value)  # type: ignore[arg-type]

    @pytest.mark.parametrize("model", ["", "  "])
    def test_model_must_be_named(self, model: str) -> None:
        with pytest.raises(ConfigError, match="embedding model must be"):
            EmbeddingConfig(model=model)

    def test_model_is_stripped_and_cache_dir_accepts_paths(self, tmp_path: Path) -> None:
        config = EmbeddingConfig(model=" m/x ", cache_dir=tmp_path)  # type: ignore[arg-type]
        assert config.model == "m/x"
        assert config.cache_dir == str(tmp_path)

    @pytest.mark.parametrize("cache_dir", ["", " ", 3])
    def test_bad_cache_dir(self, cache_dir: object) -> None:
        with pytest.raises(ConfigError, match="cache_dir must be a folder path"):
            EmbeddingConfig(cache_dir=cache_dir)  # type: ignore[arg-type]

    def test_frozen_hashable_and_picklable(self) -> None:
        config = EmbeddingConfig(backend="onnx", batch_size=8)
        with pytest.raises(AttributeError):
            config.backend = "torch"  # type: ignore[misc]
        assert pickle.loads(pickle.dumps(config)) == config
        assert len({config, EmbeddingConfig(backend="onnx", batch_size=8)}) == 1

    def test_describe_is_json_ready_and_machine_independent(self) -> None:
        described = describe(EmbeddingConfig(model="all-MiniLM-L6-v2", backend="onnx-int8"))
        assert described == {
            "model": DEFAULT_EMBEDDING_MODEL, "backend": "onnx-int8", "backend_family": "int8",
            "dimension": 384, "normalize": True, "max_seq_length": 256, "distance_metric": "cosine",
            "quantization": "int8-per-token",
        }
        assert describe(EmbeddingConfig(backend="onnx"))["quantization"] == "none"
        assert json.loads(json.dumps(described)) == described

    def test_from_description_round_trips_and_takes_runtime_overrides(self) -> None:
        original = EmbeddingConfig(backend="onnx", normalize=False, max_seq_length=128)
        rebuilt = EmbeddingConfig.from_description(describe(original), batch_size=8, threads=1)
        assert (rebuilt.backend, rebuilt.normalize, rebuilt.max_seq_length) == ("onnx", False, 128)
        assert (rebuilt.batch_size, rebuilt.threads) == (8, 1)
        assert describe(rebuilt) == describe(original)

    def test_from_description_validates(self) -> None:
        with pytest.raises(ConfigError, match="unknown embedding backend"):
            EmbeddingConfig.from_description({"model": "m/x", "backend": "gpu"})

    @pytest.mark.parametrize("mine, stored, comparable", [
        ("torch", "onnx", True),
        ("onnx", "torch", True),
        ("torch", "torch", True),
        ("onnx-int8", "onnx-int8", True),
        ("onnx-int8", "torch", False),
        ("onnx", "onnx-int8", False),
    ])
    def test_comparable_backends(self, mine: str, stored: str, comparable: bool) -> None:
        description = describe(EmbeddingConfig(backend=stored))  # type: ignore[arg-type]
        assert is_comparable(description, describe(EmbeddingConfig(backend=mine))) is comparable  # type: ignore[arg-type]

    def test_other_model_or_dimension_is_not_comparable(self) -> None:
        config = EmbeddingConfig()
        assert not is_comparable({"model": "BAAI/bge-small-en-v1.5"}, describe(config))
        assert not is_comparable({"dimension": 768}, describe(config))
        assert is_comparable({"model": DEFAULT_EMBEDDING_MODEL}, describe(config))  # missing keys are not held against
