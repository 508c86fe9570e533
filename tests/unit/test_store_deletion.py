"""Which documents --delete-missing removes (the Redis side: tests/integration/test_incremental.py)."""

from __future__ import annotations

import pytest

from rag_core.errors import PublishRefusedError
from rag_core.store.deletion import chunk_doc_id, plan_deletion


@pytest.mark.parametrize("key, expected", [("p:doc#0", "doc"), ("p:a#b#12", "a#b"), ("p:#0", "")])
def test_doc_id_from_the_chunk_key(key: str, expected: str) -> None:
    assert chunk_doc_id(key, "p:") == expected


def test_only_the_documents_not_in_the_input_go() -> None:
    assert plan_deletion(["a", "b", "c"], ["a", "b", "c", "new"], 0.5, "kb") == []
    assert plan_deletion(["b", "a", "c", "a"], ["c"], 0.7, "kb") == ["a", "b"]
    assert plan_deletion([], ["a"], 0.0, "kb") == []


def test_past_max_shrink_nothing_is_deleted() -> None:
    with pytest.raises(PublishRefusedError, match="would delete 2 of the 3 documents of kb__v1"):
        plan_deletion(["a", "b", "c"], ["a"], 0.5, "kb__v1")
    assert plan_deletion(["a", "b", "c"], ["a"], 1.0, "kb__v1") == ["b", "c"]
