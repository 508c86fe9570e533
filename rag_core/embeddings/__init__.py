"""Embedding models: name resolution, inference backends, and the Beam embedding step.

One :class:`EmbeddingConfig` says which model embeds text and how. The same config
embeds the chunks at build time (:func:`embedding_transform`, a Beam ``MLTransform``
step) and the questions at query time (:func:`load_sentence_transformer` plus
:func:`embed_texts`, in process), and :func:`describe` is what the
index stores so the two sides can be checked against each other.

Modules: ``models`` (names, the packaged model), ``config`` (the config and its
backends), ``threads``, ``onnx_export`` (the cached ONNX export), ``row_quantization``
(its int8 graph), ``onnx_model`` (the ONNX Runtime module), ``loading`` (load and embed
in process), ``transform`` (Beam), ``compatibility`` (which vectors may be searched
against which: the one rule).
"""

from rag_core.embeddings.compatibility import check_comparable, describe, for_index, is_comparable
from rag_core.embeddings.config import BACKENDS, DEFAULT_BUILD_BACKEND, EmbeddingBackend, EmbeddingConfig
from rag_core.embeddings.loading import embed_texts, embedding_dimension, load_sentence_transformer
from rag_core.embeddings.models import (
    DEFAULT_EMBEDDING_MODEL, canonical_model_name, packaged_model_path, resolve_embedding_model,
)
from rag_core.embeddings.onnx_export import OnnxExport, ensure_onnx_export
from rag_core.embeddings.threads import available_cpus, default_threads
from rag_core.embeddings.transform import SentenceTransformerHandler, embedding_transform

__all__ = [
    "BACKENDS",
    "DEFAULT_BUILD_BACKEND",
    "DEFAULT_EMBEDDING_MODEL",
    "EmbeddingBackend",
    "EmbeddingConfig",
    "OnnxExport",
    "OnnxTransformerModel",
    "SentenceTransformerHandler",
    "available_cpus",
    "check_comparable",
    "describe",
    "for_index",
    "is_comparable",
    "canonical_model_name",
    "default_threads",
    "embed_texts",
    "embedding_dimension",
    "embedding_transform",
    "ensure_onnx_export",
    "load_sentence_transformer",
    "packaged_model_path",
    "resolve_embedding_model",
]


def __getattr__(name: str) -> object:
    # OnnxTransformerModel subclasses torch.nn.Module: import it (and torch) on first use only.
    if name == "OnnxTransformerModel":
        from rag_core.embeddings.onnx_model import OnnxTransformerModel

        return OnnxTransformerModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
