"""Which vectors may be searched against which: the one home of the rule.

An index records how its chunks were embedded (:func:`describe`). Vectors from another
embedding config can be searched against it (or added to it) only when
:data:`COMPARABLE_KEYS` agree: the same model, the same dimension and the same backend
family (``torch`` and ``onnx`` give the same fp32 vectors; ``onnx-int8``'s differ). A
build that would extend an index, a query job, and the search handler all call
:func:`check_comparable`, so the refusal reads the same everywhere.

Example:
    >>> check_comparable({"model": "m", "dimension": 384}, {"model": "m", "dimension": 384}, "docs")
    >>> check_comparable({"model": "m"}, {"model": "n"}, "docs")
    Traceback (most recent call last):
    ...
    rag_core.errors.ModelMismatchError: Index 'docs' was built with embedding model 'm', but this run uses 'n': vectors would not be comparable. Use the index's embedding settings, or rebuild the index.
"""

from __future__ import annotations

from typing import Any, Mapping

from rag_core.embeddings.config import EmbeddingConfig
from rag_core.embeddings.loading import embedding_dimension
from rag_core.embeddings.models import canonical_model_name
from rag_core.embeddings.row_quantization import SCHEME
from rag_core.errors import ModelMismatchError

__all__ = ["COMPARABLE_KEYS", "check_comparable", "describe", "for_index", "is_comparable", "quantization_of"]

COMPARABLE_KEYS = ("model", "dimension", "backend_family")


def describe(config: EmbeddingConfig) -> dict[str, Any]:
    """What an index stores about its vectors (JSON-ready); reads the model's dimension."""
    return {
        "model": canonical_model_name(config.model),
        "backend": config.backend.value,
        "backend_family": config.backend_family,
        "dimension": embedding_dimension(config),
        "normalize": config.normalize,
        "max_seq_length": config.max_seq_length,
        "distance_metric": "cosine",
        # How int8 vectors were computed: an index built before per-token scales (which
        # records none) holds slightly different int8 vectors, so builds do not reuse them.
        "quantization": SCHEME if config.backend_family == "int8" else "none",
    }


def quantization_of(description: Mapping[str, Any]) -> str:
    """The ``quantization`` an index's vectors were built with; indexes from before the key
    was recorded: ``"none"`` for fp32, ``"int8-per-batch"`` for int8 (one scale per batch).

    >>> quantization_of({"backend_family": "int8"}), quantization_of({"backend_family": "fp32"})
    ('int8-per-batch', 'none')
    """
    if "quantization" in description:
        return str(description["quantization"])
    return "int8-per-batch" if description.get("backend_family") == "int8" else "none"


def is_comparable(stored: Mapping[str, Any], described: Mapping[str, Any]) -> bool:
    """Whether the two descriptions agree on every :data:`COMPARABLE_KEYS` key both have."""
    return all(stored[k] == described[k] for k in COMPARABLE_KEYS if k in stored and k in described)


def check_comparable(stored: Mapping[str, Any], described: Mapping[str, Any], index: str) -> None:
    """Raise ``ModelMismatchError`` unless :func:`is_comparable` (keys missing on a side are not held against it)."""
    for key in COMPARABLE_KEYS:
        if key in stored and key in described and stored[key] != described[key]:
            raise ModelMismatchError(
                f"Index {index!r} was built with embedding {key} {stored[key]!r}, but this run uses "
                f"{described[key]!r}: vectors would not be comparable. Use the index's embedding settings, "
                "or rebuild the index.")


def for_index(stored: Mapping[str, Any], index: str, model: str | None = None, backend: str | None = None,
              batch_size: int = 32) -> EmbeddingConfig:
    """The config that embeds questions like the index's chunks were embedded.

    ``model`` / ``backend`` are what the user asked for, if anything: another model, or a
    backend whose vectors are not comparable (``onnx-int8`` vs ``torch``/``onnx``), is
    refused; an interchangeable backend is used as asked.
    """
    if not stored.get("model"):
        raise ModelMismatchError(f"Index {index!r} does not record its embedding model: rebuild it")
    if model:
        check_comparable(stored, {"model": canonical_model_name(model)}, index)
    overrides: dict[str, Any] = {"batch_size": batch_size}
    if backend:
        overrides["backend"] = backend
    config = EmbeddingConfig.from_description(stored, **overrides)
    check_comparable(stored, describe(config), index)
    return config
