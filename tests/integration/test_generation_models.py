"""GeneratorModelHandler with real models: SmolLM2 (packaged GGUF) and a tiny T5."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from rag_core.errors import ConfigError, ModelNotAvailableError
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


    def test_a_shared_prompt_prefix_runs_once_and_changes_no_answer(self, smollm2_generator: LoadedGenerator) -> None:
        from dataclasses import replace

        builder = PromptBuilder(PromptConfig.for_style("compact", 512), smollm2_generator.tokenizer)
        passages = [Passage("eiffel#0", "eiffel", "Eiffel Tower",
                            "The Eiffel Tower is a wrought-iron tower in Paris, France. It was completed in 1889 "
                            "for the World's Fair and is 330 metres tall.", 0.9)]
        prompts = [builder.build(q, passages).text for q in (
            "In which city is the Eiffel Tower?", "When was the tower completed?", "How tall is the tower?",
            "What is the tower made of?", "For which event was the tower built?")]
        model = smollm2_generator.model
        model.__dict__.pop("_beam_rag_prefix", None)
        config = replace(smollm2_generator.config, batch_size=3)
        cached = generate_batch(smollm2_generator, prompts, config)
        kept = model.__dict__["_beam_rag_prefix"][0]  # instructions + worked examples, run once
        assert len(kept) > 150 and all(p.startswith(smollm2_generator.tokenizer.decode(kept)) for p in prompts)
        whole = generate_batch(smollm2_generator, prompts, replace(config, prefix_cache=False))
        assert cached == whole and "Paris" in cached[0] and "1889" in cached[1]
        for a, b in zip(cached, whole):
            assert a.mean_logprob == pytest.approx(b.mean_logprob, abs=1e-4)


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
            assert_that(folder | "Types" >> beam.Map(lambda r: (type(r).__name__, isinstance(r.inference, str))),
                        equal_to([("PredictionResult", True)] * len(T5_PROMPTS)), label="Types")

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



# --------------------------------------------------------------------------- backends

LLAMA_CORPUS = [
    "The Eiffel Tower is in Paris. It was completed in 1889.",
    "Mars is the fourth planet from the Sun. Its surface is red because of iron oxide.",
    "Beam pipelines batch elements before inference. Redis stores the vectors.",
    "Question: Where is the tower? Answer: Paris.",
]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with a BPE tokenizer trained here, saved as a folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(LLAMA_CORPUS * 4, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "</s>", "<s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, pad_token_id=0, eos_token_id=1, bos_token_id=2)).eval()
    folder = tmp_path_factory.mktemp("tiny_llama") / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _quantized_linears(model: object) -> int:
    return sum(1 for m in model.modules()  # type: ignore[attr-defined]
               if type(m).__module__.startswith("torch.ao.nn.quantized") and type(m).__name__ == "Linear")


class TestBackends:
    @pytest.mark.parametrize("kind", ["t5", "llama"])
    def test_each_backend_runs_through_runinference_with_one_model_per_machine(
        self, kind: str, tiny_t5, tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        folder = str(tiny_t5.folder if kind == "t5" else tiny_llama)
        # One prompt per generate call: a left-padded causal batch changes a random model's numerics.
        configs = {b: _t5_config(model=folder, backend=b, batch_size=1) for b in ("torch", "torch-int8")}
        expected = {b: list(zip(T5_PROMPTS, generate_batch(load_generator(c), T5_PROMPTS)))
                    for b, c in configs.items()}
        load_log = tmp_path / "loads.txt"
        monkeypatch.setenv(LOAD_LOG_ENV, str(load_log))
        options = PipelineOptions([], direct_running_mode="multi_processing", direct_num_workers=2)
        with beam.Pipeline("DirectRunner", options=options) as p:
            prompts = p | beam.Create(T5_PROMPTS)
            for backend, config in configs.items():
                out = prompts | f"Gen-{backend}" >> RunInference(GeneratorModelHandler(config))
                assert_that(out | f"Pair-{backend}" >> beam.Map(lambda r: (r.example, str(r.inference))),
                            equal_to(expected[backend]), label=f"Same-{backend}")
                assert_that(out | f"Conf-{backend}" >> beam.Map(
                    lambda r: r.inference == "" or r.inference.mean_logprob is not None),
                    equal_to([True] * len(T5_PROMPTS)), label=f"Confidence-{backend}")
        lines = load_log.read_text().splitlines()
        assert len(lines) == 2  # large_model: one load per model for the whole 2-process pipeline

    def test_int8_quantizes_every_linear_but_the_output_head(self, tiny_llama: Path) -> None:
        fp32 = load_generator(GeneratorConfig(model=str(tiny_llama), backend="torch", large_model=False))
        int8 = load_generator(GeneratorConfig(model=str(tiny_llama), backend="torch-int8", large_model=False))
        assert _quantized_linears(fp32.model) == 0
        assert _quantized_linears(int8.model) == 2 * 7  # q, k, v, o, gate, up, down per layer
        assert type(int8.model.get_output_embeddings()).__name__ == "Linear"

    def test_int8_needs_the_cpu(self) -> None:
        with pytest.raises(ConfigError, match="CPU only"):
            GeneratorConfig(backend="torch-int8", device="cuda")
        with pytest.raises(ConfigError, match="backend must be one of"):
            GeneratorConfig(backend="onnx")

    def test_generated_text_pickles_with_its_confidence(self) -> None:
        from rag_core.generation import GeneratedText

        text = pickle.loads(pickle.dumps(GeneratedText("Paris.", -0.5, 3, "sentence")))
        assert (text, text.mean_logprob, text.n_tokens, text.stop_reason) == ("Paris.", -0.5, 3, "sentence")

    def test_answers_stop_at_the_first_sentence_or_a_repeat(self, tiny_llama: Path) -> None:
        free = load_generator(GeneratorConfig(model=str(tiny_llama), backend="torch", max_new_tokens=40,
                                              stop_at_sentence=False, repeat_ngram=None, large_model=False))
        stopped = load_generator(GeneratorConfig(model=str(tiny_llama), backend="torch", max_new_tokens=40,
                                                 large_model=False))
        long = generate_batch(free, T5_PROMPTS)
        short = generate_batch(stopped, T5_PROMPTS)
        assert all(s.n_tokens <= f.n_tokens for s, f in zip(short, long))
        assert all(s.stop_reason in ("sentence", "repeat", "eos", None) for s in short)
        assert sum(s.n_tokens for s in short) < sum(f.n_tokens for f in long)


class TestInt8AgainstFp32:
    """The packaged SmolLM2 through ``torch-int8`` against fp32, on the sample corpus's answerable
    questions with their relevant document as context (compact prompt, greedy).

    Measured: token F1 between the two answers >= 0.5 for 1 of 5 prompts on one machine and 0 of 5
    on another with the same code and wheels (int8 kernels differ by CPU); quantising the MLP only:
    also 1 of 5. SmolLM2-135M does not survive
    int8 well, which is why ``torch`` stays the default (SQuAD 2.0 dev: answer F1 0.083 int8 vs
    0.168 fp32). This guards the floor: with the output head quantised, 0 of 16 agreed and
    answers were copies of the context fence.
    """

    def test_int8_answers_are_mostly_real_text_with_confidence(self) -> None:
        import json

        sample = Path(__file__).resolve().parents[2] / "rag_core" / "sample_data"
        docs = {d["id"]: d for d in map(json.loads, (sample / "docs.jsonl").read_text().splitlines())}
        questions = [q for q in map(json.loads, (sample / "questions.jsonl").read_text().splitlines())
                     if q.get("answerable")]
        fp32 = load_generator(GeneratorConfig(backend="torch", large_model=False))
        int8 = load_generator(GeneratorConfig(backend="torch-int8", large_model=False))
        builder = PromptBuilder(PromptConfig.for_style("compact", 1024), fp32.tokenizer)
        prompts = [builder.build(q["question"], [Passage(f"{d}#0", d, docs[d].get("title", ""), docs[d]["text"], 0.9)
                                                 for d in q["relevant_doc_ids"][:1]]).text for q in questions]
        a, b = generate_batch(fp32, prompts), generate_batch(int8, prompts)
        assert all(y.strip() for y in b) and all(isinstance(y.mean_logprob, float) for y in b)
        from rag_core.answers import strip_filler

        assert sum(bool(strip_filler(y)) for y in b) > len(b) // 2, list(zip(a, b))  # not fence copies
        # Agreement with fp32 (token F1 >= 0.5) is not guarded: it differs by CPU (see the docstring).
