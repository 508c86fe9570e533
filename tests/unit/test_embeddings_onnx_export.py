"""rag_core.embeddings.onnx_export: where each ONNX backend's file lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_core.embeddings import OnnxExport
from rag_core.errors import ConfigError


class TestOnnxExport:
    def test_onnx_export_files(self, tmp_path: Path) -> None:
        export = OnnxExport(tmp_path, exported=False)
        assert export.file_for("onnx") == tmp_path / "onnx" / "model.onnx"
        assert export.file_for("onnx-int8") == tmp_path / "onnx" / "model_qint8.onnx"
        with pytest.raises(ConfigError, match="does not run an ONNX file"):
            export.file_for("torch")
