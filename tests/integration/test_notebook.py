"""The quickstart notebook runs top to bottom against the session Redis, so it cannot rot."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(redis_url, index_name, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BEAM_RAG_NOTEBOOK_INDEX", index_name)
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOK.parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = "".join(out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
                      for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert "Q: " in outputs and "score" in outputs
    assert "scores.png" in outputs
    assert not any(out.get("output_type") == "error" for cell in nb.cells for out in cell.get("outputs", []))
