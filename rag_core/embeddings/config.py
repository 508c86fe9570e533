"""Which model embeds text, with which backend: :class:`EmbeddingConfig`.

Backends (all CPU-friendly, all offline), see :class:`EmbeddingBackend`:

- ``torch``: plain ``sentence-transformers``.
- ``onnx``: the same model exported once to ONNX (fp32) and run by ONNX Runtime.
- ``onnx-int8``: that export with int8 ``MatMul`` weights (per channel; the first
  layer's FFN output projection stays fp32) and int8 activations with one scale per token
  (:mod:`rag_core.embeddings.row_quantization`), the fastest on CPU.

Which backends are interchangeable (:attr:`EmbeddingBackend.family`, stored with the
index and compared by the ingest and query sides):

- ``torch`` and ``onnx`` compute the same fp32 graph (max abs difference ~4e-6, cosine
  1.0000 on 500 SciFact abstracts): family ``"fp32"``, freely mixed.
- ``onnx-int8`` is close but not equal (cosine to ``torch`` 0.9966 mean, 0.9933 min on
  384 SciFact abstracts) and batch-invariant (a text alone or in a batch of 32: cosine
  1.000000; the first int8 export, with one activation scale per batch, differed by 0.993).
  It is family ``"int8"``, comparable only with itself, so an index records honestly which
  numerics built it (and its ``quantization``: builds do not reuse vectors of the
  per-batch scheme). The cost of crossing
  the line is small (SciFact test claims over 1,783 abstracts, nDCG@10: torch/torch
  0.747, int8 index/int8 queries 0.741, int8 index/torch queries 0.738, torch
  index/int8 queries 0.744), so the query side should simply embed with the index's
  own settings (:meth:`EmbeddingConfig.from_description`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

from rag_core.embeddings.models import (
    DEFAULT_EMBEDDING_MODEL, check_model_name, resolve_embedding_model,
)
from rag_core.errors import ConfigError
from rag_core.validation import check_optional_int, check_positive_int

__all__ = ["BACKENDS", "DEFAULT_BUILD_BACKEND", "EmbeddingBackend", "EmbeddingConfig"]


class EmbeddingBackend(str, Enum):
    """How the model runs. Its :attr:`family` says which backends' vectors can be mixed."""

    TORCH = "torch"
    """Plain sentence-transformers (PyTorch)."""
    ONNX = "onnx"
    """The fp32 ONNX export under ONNX Runtime: the same numerics as ``torch``."""
    ONNX_INT8 = "onnx-int8"
    """The export with int8 ``MatMul`` weights: fastest on CPU, its own family."""

    def __str__(self) -> str:  # f-strings and messages show "onnx", not "EmbeddingBackend.ONNX"
        return self.value

    @property
    def family(self) -> str:
        """``"fp32"`` for torch and onnx (interchangeable vectors), ``"int8"`` for onnx-int8.

        Example:
            >>> EmbeddingBackend("onnx").family, EmbeddingBackend.ONNX_INT8.family
            ('fp32', 'int8')
        """
        return "int8" if self is EmbeddingBackend.ONNX_INT8 else "fp32"


BACKENDS: tuple[str, ...] = tuple(backend.value for backend in EmbeddingBackend)
# What ``beam-rag ingest`` builds a new index (or a rebuild) with when --embedding-backend is
# not given. The first 1,000 SciFact documents through the ingest pipeline, every chunk, one
# session: torch 8.6 docs/s, onnx-int8 10.9 (encoder alone 16.6 vs 23.6 chunks/s); all 5,183:
# nDCG@10 dense 0.654 -> 0.649, hybrid 0.715 -> 0.713. ``EmbeddingConfig()`` stays torch,
# the reference numerics.
DEFAULT_BUILD_BACKEND = EmbeddingBackend.ONNX_INT8


@dataclass(frozen=True)
class EmbeddingConfig:
    """Which model embeds text, with which backend, and how.

    Args:
        model: a sentence-transformers hub id or folder; the default resolves to the
            packaged offline copy (see :func:`resolve_embedding_model`).
        backend: an :class:`EmbeddingBackend` or its value (``"torch"``, ``"onnx"``,
            ``"onnx-int8"``).
        batch_size: texts per forward pass.
        normalize: L2-normalize the vectors (cosine = dot product). Models whose modules
            end in ``Normalize`` (all-MiniLM-L6-v2 does) return unit vectors regardless.
        max_seq_length: truncate inputs to this many tokens (None: the model's own).
        threads: CPU threads per model copy (None: :func:`default_threads`).
        cache_dir: where ONNX exports live (None: :func:`rag_core.paths.cache_dir`).

    Example:
        >>> config = EmbeddingConfig(backend="onnx-int8", batch_size=32)
        >>> config.backend is EmbeddingBackend.ONNX_INT8, config.backend_family
        (True, 'int8')
        >>> EmbeddingConfig(backend="tensorrt")
        Traceback (most recent call last):
        ...
        rag_core.errors.ConfigError: unknown embedding backend 'tensorrt': choose one of torch, onnx, onnx-int8
    """

    model: str = DEFAULT_EMBEDDING_MODEL
    backend: EmbeddingBackend = EmbeddingBackend.TORCH
    batch_size: int = 32
    normalize: bool = True
    max_seq_length: int | None = 256
    threads: int | None = None
    cache_dir: str | None = field(default=None, compare=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", check_model_name(self.model))
        try:
            object.__setattr__(self, "backend", EmbeddingBackend(self.backend))
        except ValueError:
            raise ConfigError(f"unknown embedding backend {self.backend!r}: "
                              f"choose one of {', '.join(BACKENDS)}") from None
        check_positive_int("batch_size", self.batch_size)
        if not isinstance(self.normalize, bool):
            raise ConfigError(f"normalize must be True or False, got {self.normalize!r}")
        check_optional_int("max_seq_length", self.max_seq_length, minimum=1)
        check_optional_int("threads", self.threads, minimum=1)
        if self.cache_dir is not None:
            if not isinstance(self.cache_dir, (str, os.PathLike)) or not os.fspath(self.cache_dir).strip():
                raise ConfigError(f"cache_dir must be a folder path, got {self.cache_dir!r}")
            object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))

    @classmethod
    def from_description(cls, description: Mapping[str, Any], **overrides: Any) -> EmbeddingConfig:
        """The config that embeds like the one that produced ``description`` (an index's record).

        Runtime-only settings (batch size, threads, cache folder) come from ``overrides``.

        Example:
            >>> EmbeddingConfig.from_description({"model": "m/x", "backend": "onnx"}).backend.value
            'onnx'
        """
        known = {"model", "backend", "normalize", "max_seq_length"}
        values = {key: description[key] for key in known if key in description}
        values.update(overrides)
        return cls(**values)

    @property
    def backend_family(self) -> str:
        """``"fp32"`` for torch and onnx (interchangeable vectors), ``"int8"`` for onnx-int8."""
        return self.backend.family

    @property
    def resolved_model(self) -> str:
        """The folder or hub id that is actually loaded."""
        return resolve_embedding_model(self.model)
