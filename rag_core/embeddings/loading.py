"""Loading a ``SentenceTransformer`` as an :class:`EmbeddingConfig` says, and embedding in process.

The query side embeds questions with :func:`load_sentence_transformer` and
:func:`embed_texts`; the Beam step (:mod:`rag_core.embeddings.transform`) loads through
the same function, so both sides run the same backend.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rag_core.embeddings.config import EmbeddingBackend, EmbeddingConfig
from rag_core.embeddings.models import dimension_from_folder
from rag_core.embeddings.onnx_export import ensure_onnx_export
from rag_core.embeddings.threads import default_threads
from rag_core.errors import ModelNotAvailableError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["embed_texts", "embedding_dimension", "encode_kwargs", "load_sentence_transformer"]


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
    if config.backend is EmbeddingBackend.TORCH:
        import torch

        torch.set_num_threads(threads)
        model = _load_model(config, path, device=None)
    else:
        from rag_core.embeddings.onnx_model import OnnxTransformerModel  # an nn.Module: imports torch

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
    vectors = model.encode(list(texts), **encode_kwargs(config))
    return np.asarray(vectors, dtype=np.float32)


def encode_kwargs(config: EmbeddingConfig) -> dict[str, Any]:
    """``SentenceTransformer.encode`` arguments for ``config`` (numpy out, no progress bar)."""
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
    dimension = dimension_from_folder(folder) if folder.is_dir() else None
    if dimension is None:
        dimension = _model_dimension(load_sentence_transformer(replace(config, backend=EmbeddingBackend.TORCH)))
    return dimension
