"""Plain dataclasses every stage imports.

Chunks are Beam's own ``apache_beam.ml.rag.types.Chunk`` (re-exported here) so
our writer and enrichment handler plug into Beam's ``ml.rag`` transforms.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from apache_beam.ml.rag.types import Chunk, Content, Embedding

__all__ = ["Chunk", "ChunkMeta", "Content", "Embedding", "Document", "DeadLetter", "MetadataValue"]

MetadataValue = Union[str, int, float, bool]


class ChunkMeta:
    """The keys of ``Chunk.metadata`` that the chunker (:mod:`rag_core.chunking`) writes
    and the writer (:func:`rag_core.ingestion.chunk_to_record`) reads.

    >>> ChunkMeta.DOC_ID
    'doc_id'
    """

    DOC_ID = "doc_id"
    TITLE = "title"
    TEXT = "text"  # the chunk's own text (``content.text`` is what gets embedded: title + text)
    URL = "url"
    CHUNK_COUNT = "chunk_count"
    CONTENT_HASH = "content_hash"
    METADATA = "metadata"  # the document's user metadata object
    TOKENS = "tokens"
    CHUNKS_DROPPED = "chunks_dropped"  # chunks past --max-chunks-per-doc, on every chunk of the document


@dataclass(frozen=True)
class Document:
    """One source document, validated and ready to chunk."""

    id: str
    text: str
    title: str = ""
    url: str = ""
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    source: str = ""  # "path:line" or "path": where it came from, for messages


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be processed, with the reason, so nothing is lost silently."""

    source: str
    reason: str
    id: str | None = None
    stage: str = "read"
    excerpt: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> "DeadLetter":
        data: dict[str, Any] = json.loads(line)
        return cls(**data)
