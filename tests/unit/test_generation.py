"""rag_core.generation without a model: config validation, the RunInference handler contract, name resolution."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from rag_core.errors import ConfigError
from rag_core.generation import (
    DEFAULT_GENERATOR, GeneratorConfig, GeneratorModelHandler, prompt_length, resolve_generator,
)


class TestGeneratorConfig:
    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"dtype": "float64"}, "dtype must be one of"),
            ({"device": "tpu"}, "device must be"),
            ({"max_new_tokens": 0}, "max_new_tokens"),
            ({"model_copies": 0}, "model_copies"),
            ({"min_batch_size": 4, "max_batch_size": 2}, "max_batch_size"),
            ({"length_buckets": (64, 32)}, "length_buckets"),
            ({"model_name": "x"}, "only used with model_state_dict_path"),
        ],
    )
    def test_invalid(self, kwargs: dict, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            GeneratorConfig(**kwargs)

    def test_defaults(self) -> None:
        config = GeneratorConfig()
        assert (config.model, config.device, config.dtype) == (DEFAULT_GENERATOR, "cpu", "float32")
        assert config.large_model and config.model_copies == 1
        assert config.effective_max_batch_size == config.batch_size == 8


class TestHandlerContract:
    def test_large_model_and_copies_follow_config(self) -> None:
        shared = GeneratorModelHandler(GeneratorConfig(model_copies=3))
        assert shared.share_model_across_processes() is True
        assert shared.model_copies() == 3
        local = GeneratorModelHandler(GeneratorConfig(large_model=False))
        assert local.share_model_across_processes() is False
        assert local.model_copies() == 1

    def test_batching_kwargs_bound_sizes_and_bucket_by_length(self) -> None:
        handler = GeneratorModelHandler(
            GeneratorConfig(min_batch_size=2, max_batch_size=16, length_buckets=(32, 256)))
        kwargs = handler.batch_elements_kwargs()
        assert kwargs["min_batch_size"] == 2 and kwargs["max_batch_size"] == 16
        assert kwargs["length_fn"] is prompt_length
        assert kwargs["bucket_boundaries"] == [32, 256]
        assert "max_batch_duration_secs" not in kwargs  # stateful batching is opt-in
        # By default batches are full: Beam's adaptive sizing would start (and stay) near 1.
        default = GeneratorModelHandler(GeneratorConfig(batch_size=6)).batch_elements_kwargs()
        assert default["min_batch_size"] == default["max_batch_size"] == 6
        assert prompt_length("x" * 400) == 101

    def test_picklable_before_load(self) -> None:
        handler = GeneratorModelHandler(GeneratorConfig(model_copies=2, max_new_tokens=7))
        clone = pickle.loads(pickle.dumps(handler))
        assert clone.config == handler.config
        assert clone.batch_elements_kwargs() == handler.batch_elements_kwargs()


class TestResolution:
    def test_other_names_pass_through(self, tmp_path: Path) -> None:
        assert resolve_generator("google/flan-t5-small") == "google/flan-t5-small"
        assert resolve_generator(str(tmp_path)) == str(tmp_path)
