"""GeneratorModelHandler with real models: SmolLM2 (packaged GGUF) and a tiny T5."""

from __future__ import annotations

import os
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from rag_core.errors import ModelNotAvailableError
from rag_core.generation import (
    DEFAULT_GENERATOR, LOAD_LOG_ENV, GeneratorConfig, GeneratorModelHandler, LoadedGenerator, generate_batch,
    load_generator, resolve_generator,
)
from rag_core.paths import cache_dir
from rag_core.prompt import Passage, PromptBuilder, PromptConfig
from rag_core.smollm2 import SMOLLM2_CACHE_NAME, ensure_smollm2_cached

T5_PROMPTS = [
    "Where is the Eiffel Tower?",
    "Which planet is the smallest?",
    "Answer the question using only the context. What do Beam pipelines batch?",
    "Mercury",
    "What does a question answering system retrieve and generate?",
]


def _t5_config(**overrides: object) -> GeneratorConfig:
    base: dict[str, object] = dict(max_new_tokens=6, batch_size=2, max_batch_size=3, num_threads=1)
    base.update(overrides)
    return GeneratorConfig(**base)  # type: ignore[arg-type]


class TestResolution:
    def test_smollm2_resolves_to_the_cached_conversion(self) -> None:
        path = Path(resolve_generator("smollm2"))
        assert path == ensure_smollm2_cached() == cache_dir() / SMOLLM2_CACHE_NAME
        assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
        assert resolve_generator(DEFAULT_GENERATOR) == str(path) == resolve_generator(None)

    def test_missing_model_offline_is_a_clear_error(self) -> None:
        with pytest.raises(ModelNotAvailableError, match="not available.*smollm2"):
            load_generator(GeneratorConfig(model="no-such-org/no-such-model-xyz"))


class TestSmolLM2:
    def test_handler_generates_greedy_strings(self, smollm2_generator: LoadedGenerator) -> None:
        handler = GeneratorModelHandler(GeneratorConfig(max_new_tokens=16))
        builder = PromptBuilder(PromptConfig(max_prompt_tokens=512), smollm2_generator.tokenizer)
        passages = [Passage("eiffel#0", "eiffel", "Eiffel Tower",
                            "The Eiffel Tower is a wrought-iron tower in Paris, France.", 0.9)]
        prompts = [builder.build("In which city is the Eiffel Tower?", passages).text,
                   builder.build("Who built the tower?", passages).text]
        results = list(handler.run_inference(prompts, smollm2_generator))
        assert [r.example for r in results] == prompts
        assert all(isinstance(r.inference, str) and r.inference for r in results)
        assert "Paris" in results[0].inference
        again = list(handler.run_inference(prompts, smollm2_generator))
        assert [r.inference for r in again] == [r.inference for r in results]  # greedy

    def test_batch_answers_map_back_to_their_prompts(self, smollm2_generator: LoadedGenerator) -> None:
        tok = smollm2_generator.tokenizer
        prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                           add_generation_prompt=True)
                   for q in ("What is 2 + 2? Answer with the number only, then explain in detail.",
                             "Name a color.")]
        batch = generate_batch(smollm2_generator, prompts, max_new_tokens=8)
        singles = [generate_batch(smollm2_generator, [p], max_new_tokens=8)[0] for p in prompts]
        assert batch == singles  # sorted by length and left-padded, yet in input order


class TestTinyT5:
    def test_folder_and_state_dict_load_the_same_model(self, tiny_t5) -> None:
        from_folder = load_generator(_t5_config(model=str(tiny_t5.folder)))
        from_state = load_generator(_t5_config(model_state_dict_path=str(tiny_t5.state_dict),
                                               model_name=str(tiny_t5.folder)))
        assert from_folder.model.config.is_encoder_decoder
        assert type(from_state.model).__name__ == "T5ForConditionalGeneration"
        a = generate_batch(from_folder, T5_PROMPTS)
        b = generate_batch(from_state, T5_PROMPTS)
        assert a == b and len(a) == len(T5_PROMPTS)
        assert all(isinstance(x, str) for x in a)
        assert any(a)  # a random model still emits some tokens

    def test_runinference_multiprocess_pipeline_loads_each_model_once(
        self, tiny_t5, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        folder_cfg = _t5_config(model=str(tiny_t5.folder))
        state_cfg = _t5_config(model_state_dict_path=str(tiny_t5.state_dict),
                               model_name=str(tiny_t5.folder))
        expected = list(zip(T5_PROMPTS, generate_batch(load_generator(folder_cfg), T5_PROMPTS)))
        load_log = tmp_path / "loads.txt"
        monkeypatch.setenv(LOAD_LOG_ENV, str(load_log))

        options = PipelineOptions([], direct_running_mode="multi_processing", direct_num_workers=2)
        with beam.Pipeline("DirectRunner", options=options) as p:
            prompts = p | beam.Create(T5_PROMPTS)
            folder = prompts | "FromFolder" >> RunInference(GeneratorModelHandler(folder_cfg))
            state = prompts | "FromStateDict" >> RunInference(GeneratorModelHandler(state_cfg))
            # Lambdas, not test-module functions: the worker processes cannot import this module.
            assert_that(folder | "PairF" >> beam.Map(lambda r: (r.example, r.inference)),
                        equal_to(expected), label="Folder")
            assert_that(state | "PairS" >> beam.Map(lambda r: (r.example, r.inference)),
                        equal_to(expected), label="StateDict")
            assert_that(folder | "Types" >> beam.Map(lambda r: type(r).__name__ + "/" + type(r.inference).__name__),
                        equal_to(["PredictionResult/str"] * len(T5_PROMPTS)), label="Types")

        lines = load_log.read_text().splitlines()
        # One load per model for the whole multi-process pipeline (large_model shares it),
        # in a worker process, not in this test process.
        assert sorted(line.split(" ", 1)[1] for line in lines) == sorted(
            [folder_cfg.label, state_cfg.label])
        assert all(int(line.split(" ", 1)[0]) != os.getpid() for line in lines)

    def test_length_bucketed_stateful_batching(self, tiny_t5) -> None:
        # max_batch_duration_secs turns on Beam's stateful BatchElements, which keys
        # prompts by length bucket (its real-time timer runs on the in-process runner).
        config = _t5_config(model=str(tiny_t5.folder), max_batch_duration_secs=1,
                            length_buckets=(4, 16), large_model=False)
        expected = list(zip(T5_PROMPTS, generate_batch(load_generator(config), T5_PROMPTS)))
        with beam.Pipeline("DirectRunner", options=PipelineOptions([])) as p:
            out = (p | beam.Create(T5_PROMPTS)
                   | RunInference(GeneratorModelHandler(config))
                   | beam.Map(lambda r: (r.example, r.inference)))
            assert_that(out, equal_to(expected))
