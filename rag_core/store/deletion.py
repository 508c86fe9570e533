"""``--mode upsert --delete-missing``: remove from the live version the documents the input no longer has.

LangChain's "full" cleanup and LlamaIndex's UPSERTS_AND_DELETE, inside the build: it
runs at publish time, once every write landed, under the build lease. The live
version's documents are found by key prefix (SCAN, pipelined, no FT query whose
result size is capped), and deleting more than ``max_shrink`` of them is refused
with nothing deleted — as a rebuild that shrank too much is not published.
"""

from __future__ import annotations

from typing import Any, Iterable

from rag_core.errors import PublishRefusedError

__all__ = ["chunk_doc_id", "delete_missing", "documents_under", "plan_deletion"]

SCAN_COUNT = 1000
DELETE_BATCH = 500


def chunk_doc_id(key: str, prefix: str) -> str:
    """The document id in a chunk's key (``<prefix><doc_id>#<n>``; an id may itself hold ``#``).

    >>> chunk_doc_id("beamrag:kb:v1:guide#intro#3", "beamrag:kb:v1:")
    'guide#intro'
    """
    return key[len(prefix):].rpartition("#")[0]


def documents_under(client: Any, prefix: str) -> dict[str, list[str]]:
    """Every document id under ``prefix`` with its chunk keys."""
    docs: dict[str, list[str]] = {}
    for raw in client.scan_iter(match=f"{prefix}*", count=SCAN_COUNT):
        key = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        docs.setdefault(chunk_doc_id(key, prefix), []).append(key)
    return docs


def plan_deletion(present: Iterable[str], keep: Iterable[str], max_shrink: float, index: str) -> list[str]:
    """The ids to delete (present, not kept), or PublishRefusedError past ``max_shrink``.

    >>> plan_deletion(["a", "b", "c", "d"], ["a", "b", "c"], 0.5, "kb")
    ['d']
    >>> plan_deletion(["a", "b", "c", "d"], ["a"], 0.5, "kb")
    Traceback (most recent call last):
    ...
    rag_core.errors.PublishRefusedError: --delete-missing would delete 3 of the 4 documents of kb (more than --max-shrink 50%); nothing was deleted: rerun with a larger --max-shrink if this is intended
    """
    present = sorted(set(present))
    kept = set(keep)
    missing = [doc for doc in present if doc not in kept]
    if present and len(missing) > max_shrink * len(present):
        raise PublishRefusedError(
            f"--delete-missing would delete {len(missing)} of the {len(present)} documents of {index} "
            f"(more than --max-shrink {max_shrink:.0%}); nothing was deleted: rerun with a larger "
            "--max-shrink if this is intended")
    return missing


def delete_missing(client: Any, prefix: str, keep: Iterable[str], max_shrink: float, index: str) -> int:
    """Delete the chunks of every document under ``prefix`` not in ``keep``; how many documents."""
    docs = documents_under(client, prefix)
    missing = plan_deletion(docs, keep, max_shrink, index)
    keys = [key for doc in missing for key in docs[doc]]
    for start in range(0, len(keys), DELETE_BATCH):
        pipe = client.pipeline(transaction=False)
        pipe.unlink(*keys[start:start + DELETE_BATCH])
        pipe.execute()
    return len(missing)
