"""rag_core.ingestion: the pure chunk → Redis record converter and the write summary."""

from __future__ import annotations

import pytest

from rag_core.ingestion import WriteSummary, chunk_to_record
from rag_core.types import Chunk, Content, Embedding


def test_record_converter():
    chunk = Chunk(content=Content(text="T body"), id="d#1", index=1,
                  metadata={"doc_id": "d", "title": "T", "text": "body", "chunk_count": 2,
                            "content_hash": "h", "metadata": {"flag": True, "n": 3}},
                  embedding=Embedding(dense_embedding=[1.0, 2.0, 3.0]))
    chunk_id, rec = chunk_to_record(chunk)
    assert chunk_id == "d#1"
    assert rec["text"] == "body" and rec["md_flag"] == "true" and rec["md_n"] == 3
    assert len(rec["embedding"]) == 12
    with pytest.raises(ValueError, match="no dense embedding"):
        chunk_to_record(Chunk(content=Content(text="x"), id="e#0"))


def test_write_summary_merges_field_kinds() -> None:
    merged = WriteSummary(1, 1, 10, {"year": "numeric"}).merge(WriteSummary(2, 1, 5, {"year": "tag"}))
    assert merged == WriteSummary(3, 2, 15, {"year": "tag"})
