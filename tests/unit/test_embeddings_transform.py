"""rag_core.embeddings.transform: the Beam step is built and pickled without loading a model."""

from __future__ import annotations

import pickle
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

import rag_core.embeddings.transform
from rag_core.embeddings import (
    DEFAULT_EMBEDDING_MODEL, EmbeddingConfig, SentenceTransformerHandler, available_cpus, embedding_transform,
)
from rag_core.errors import ConfigError


class TestBeamWiring:
    def test_handler_batches_full_sort_windows_and_pickles_without_a_model(self) -> None:
        handler = SentenceTransformerHandler(EmbeddingConfig(batch_size=16), workers=2)
        assert handler.batch_elements_kwargs() == {"min_batch_size": 128, "max_batch_size": 128}
        narrow = SentenceTransformerHandler(EmbeddingConfig(batch_size=16), sort_window=1)
        assert narrow.batch_elements_kwargs() == {"min_batch_size": 16, "max_batch_size": 16}
        clone = pickle.loads(pickle.dumps(handler))
        assert clone.config == handler.config and clone.workers == 2
        assert repr(handler) == f"SentenceTransformerHandler(model={DEFAULT_EMBEDDING_MODEL!r}, backend='torch')"

    def test_the_model_loads_at_the_first_batch_not_at_setup(self) -> None:
        handler = SentenceTransformerHandler(EmbeddingConfig(batch_size=4))
        model = handler.load_model()  # what RunInference calls in setup
        assert not model.loaded
        vectors = handler.run_inference(["a first chunk", "a second one"], model)
        assert model.loaded and vectors.shape == (2, 384)
        loaded = model.model()
        handler.run_inference(["again"], model)
        assert model.model() is loaded  # loaded once

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
