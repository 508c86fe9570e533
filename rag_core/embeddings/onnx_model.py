"""An ONNX Runtime session in the place of the Hugging Face model inside a ``SentenceTransformer``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch  # an nn.Module: imported only when an ONNX model loads (see rag_core.embeddings.loading)

from rag_core.embeddings.onnx_export import ONNX_OUTPUT

__all__ = ["OnnxTransformerModel"]


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
        hidden = self.session.run([ONNX_OUTPUT], feeds)[0]
        return {ONNX_OUTPUT: torch.from_numpy(hidden)}
