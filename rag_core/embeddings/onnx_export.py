"""The ONNX export of an embedding model (fp32, plus an int8 copy), built once and cached.

Why not ``SentenceTransformer(..., backend="onnx")``: it needs ``optimum``'s ONNX
Runtime classes, and no released ``optimum``/``optimum-onnx`` works with
``transformers`` 5 (``optimum`` 1.x fails to import, ``optimum-onnx`` 0.1 requires
``transformers<4.58``). So the export uses ``torch.onnx.export`` (the TorchScript
exporter, ``dynamo=False``) and the int8 copy :mod:`rag_core.embeddings.row_quantization`; the
loaded model runs it through :class:`rag_core.embeddings.onnx_model.OnnxTransformerModel`.

The export is written once per model under :func:`rag_core.paths.cache_dir`, in
``embeddings/<model>-onnx-<fingerprint>/onnx/``, by :func:`rag_core.paths.build_cached_folder`:
concurrent workers never see or write a partial export, and later loads reuse it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, cast

import numpy as np
import torch  # Beam's ModelHandler module imports it; the CLI defers it (pipelines.deferred_imports)

from rag_core.embeddings.models import canonical_model_name, resolve_embedding_model
from rag_core.embeddings.row_quantization import quantize_rows
from rag_core.errors import ConfigError, ModelNotAvailableError
from rag_core.paths import build_cached_folder, cache_dir

if TYPE_CHECKING:
    from rag_core.embeddings.config import EmbeddingConfig

__all__ = ["ONNX_OUTPUT", "OnnxExport", "ensure_onnx_export"]

ONNX_SUBFOLDER = "onnx"
ONNX_FP32_FILE = "model.onnx"
ONNX_INT8_FILE = "model_qint8.onnx"
ONNX_OUTPUT = "last_hidden_state"
_EXPORT_MANIFEST = "export.json"
# Bump to invalidate every cached export (part of the cache folder's fingerprint).
# 2: int8 activations quantized per token (batch-invariant), no longer per batch.
_EXPORT_FORMAT = 2
_ONNX_OPSET = 17
_TRANSFORMER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# MatMuls left in fp32 by the int8 export (BERT-style names; no match = all quantized).
_INT8_KEEP_FP32 = r"layers?\.0/output/dense/MatMul$"


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
    gets a new export.
    """
    source = _local_model_folder(config.model)
    root = Path(config.cache_dir).expanduser() if config.cache_dir else cache_dir()
    slug = canonical_model_name(config.model).rstrip("/").split("/")[-1] or "model"
    target = root / "embeddings" / f"{slug}-onnx-{_model_fingerprint(source)}"
    built: list[Path] = []

    def build(staging: Path) -> None:
        _export_onnx(source, staging)
        built.append(staging)

    build_cached_folder(target, build, _is_complete_export)
    return OnnxExport(target, exported=bool(built))


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
    wrapper = _export_wrapper()(model, names).eval()
    args = tuple(sample[name] for name in names)
    with torch.no_grad():
        reference = wrapper(*args).numpy()
    folder = destination / ONNX_SUBFOLDER
    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8 = folder / ONNX_FP32_FILE, folder / ONNX_INT8_FILE
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, ONNX_OUTPUT]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings and the TorchScript-exporter deprecation
        torch.onnx.export(wrapper, args, str(fp32), input_names=names, output_names=[ONNX_OUTPUT],
                          dynamic_axes=axes, opset_version=_ONNX_OPSET, do_constant_folding=True, dynamo=False)
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    exported = session.run(None, {name: sample[name].numpy() for name in names})[0]
    mask = sample["attention_mask"].numpy()[..., None].astype(bool)
    error = float(np.abs((exported - reference) * mask).max())
    if error > 1e-3:
        raise ModelNotAvailableError(f"the ONNX export of {source} does not reproduce the model "
                                     f"(max difference {error:.3g}); use backend 'torch'")
    # Int8 MatMuls with one activation scale per token (rag_core.embeddings.row_quantization:
    # batch-invariant, unlike quantize_dynamic's one scale per batch), weights per output
    # channel (per-tensor: cosine to fp32 drops to 0.87 min on long texts). The embedding
    # tables stay fp32, and so does the first layer's FFN down-projection, the most
    # outlier-sensitive matrix (keeping it fp32 lifted min cosine 0.991 -> 0.993).
    quantization = quantize_rows(fp32, int8, keep_fp32=_INT8_KEEP_FP32)
    manifest = {
        "format": _EXPORT_FORMAT,
        "source": str(source),
        "inputs": names,
        "output": ONNX_OUTPUT,
        "opset": _ONNX_OPSET,
        "max_abs_error": error,
        "int8": quantization,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (destination / _EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


@functools.cache
def _export_wrapper() -> type:
    """The export wrapper class, defined on first use: reading ``torch.nn`` at import would import torch."""

    class ExportWrapper(torch.nn.Module):
        """Positional inputs in, last hidden state out: the signature the exporter traces."""

        def __init__(self, model: Any, names: Sequence[str]) -> None:
            super().__init__()
            self.model = model
            self.names = list(names)

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(self.names, inputs)), return_dict=True).last_hidden_state

    return ExportWrapper
