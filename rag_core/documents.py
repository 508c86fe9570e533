"""Turn raw source records into validated ``Document``s or ``DeadLetter``s.

Pure functions: the Beam readers in ``rag_core.readers`` call them per line,
row or file, so every rule here is unit-tested without a pipeline.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping, Union

from rag_core.errors import ConfigError
from rag_core.types import DeadLetter, Document, MetadataValue

DEFAULT_MAX_DOC_BYTES = 10 * 1024 * 1024
MAX_ID_CHARS = 512
# Every metadata key becomes an index field and RediSearch allows 1024 fields in all.
MAX_METADATA_KEYS = 64
# Numeric metadata is indexed as a double: anything float() cannot hold fails to index.
_MAX_NUMBER = 1.7976931348623157e308
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
METADATA_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # fullmatch: "$" would allow a trailing newline
# Field names the index schema uses itself; metadata may not shadow them.
RESERVED_KEYS = frozenset(
    {"text", "title", "url", "doc_id", "chunk_id", "chunk_index", "chunk_count",
     "content_hash", "metadata", "embedding", "score", "id"}
)

ParseResult = Union[Document, DeadLetter]


@dataclass(frozen=True)
class FieldMap:
    """Which columns hold the id, text and title in CSV / Parquet / JSONL records."""

    id_field: str = "id"
    text_field: str = "text"
    title_field: str = "title"
    url_field: str = "url"
    metadata_field: str = "metadata"

    def __post_init__(self) -> None:
        for name in (self.id_field, self.text_field):
            if not name:
                raise ConfigError("--id-field and --text-field must not be empty")


def clean_text(text: str) -> str:
    """Drop control characters (keeping tab and newlines) that break tokenizers and JSON."""
    return _CONTROL_CHARS.sub("", text).replace("\r\n", "\n")


def _excerpt(raw: Any, limit: int = 200) -> str:
    text = raw if isinstance(raw, str) else repr(raw)
    return text[:limit]


def _normalise_metadata(raw: Any) -> tuple[dict[str, MetadataValue], str | None]:
    """Validate a metadata object: string keys of a safe shape, scalar values."""
    if raw is None:
        return {}, None
    if not isinstance(raw, Mapping):
        return {}, f"metadata must be an object of strings/numbers, got {type(raw).__name__}"
    if len(raw) > MAX_METADATA_KEYS:
        return {}, f"too many metadata keys ({len(raw)} > {MAX_METADATA_KEYS})"
    out: dict[str, MetadataValue] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not METADATA_KEY.fullmatch(key):
            return {}, (
                f"metadata key {key!r} is not allowed: use a letter then letters, digits or "
                "underscores (at most 64)"
            )
        if key in RESERVED_KEYS:
            return {}, f"metadata key {key!r} is reserved"
        if isinstance(value, bool) or isinstance(value, str):
            out[key] = unicodedata.normalize("NFC", clean_text(value)) if isinstance(value, str) else value
        elif isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                return {}, f"metadata value for {key!r} must be finite"
            if isinstance(value, int) and not -_MAX_NUMBER <= value <= _MAX_NUMBER:
                return {}, f"metadata value for {key!r} is out of range for a number (about 1.8e308)"
            out[key] = value
        else:
            return {}, f"metadata value for {key!r} must be a string or number, got {type(value).__name__}"
    return out, None


def document_from_record(
    record: Mapping[str, Any], source: str, fields: FieldMap = FieldMap(),
    extra_metadata: bool = False,
) -> ParseResult:
    """Validate one record (a JSON object, CSV row or Parquet row).

    With ``extra_metadata`` (CSV/Parquet), columns other than id/text/title/url
    become metadata.
    """
    raw_id = record.get(fields.id_field)
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        return DeadLetter(source, f"missing id field {fields.id_field!r}", excerpt=_excerpt(dict(record)))
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        return DeadLetter(source, f"id must be a string or integer, got {type(raw_id).__name__}",
                          excerpt=_excerpt(raw_id))
    doc_id = unicodedata.normalize("NFC", clean_text(str(raw_id)).strip())  # one id, however it was typed
    if not doc_id:
        return DeadLetter(source, f"id field {fields.id_field!r} is empty once control characters are removed",
                          excerpt=_excerpt(raw_id))
    if len(doc_id) > MAX_ID_CHARS:
        return DeadLetter(source, f"id longer than {MAX_ID_CHARS} characters", id=doc_id[:64])
    text = record.get(fields.text_field)
    if text is None:
        return DeadLetter(source, f"missing text field {fields.text_field!r}", id=doc_id)
    if not isinstance(text, str):
        return DeadLetter(source, f"text must be a string, got {type(text).__name__}", id=doc_id)
    text = clean_text(text)
    if not text.strip():
        return DeadLetter(source, "empty text", id=doc_id)
    title = record.get(fields.title_field) or ""
    url = record.get(fields.url_field) or ""
    if not isinstance(title, str) or not isinstance(url, str):
        return DeadLetter(source, "title and url must be strings", id=doc_id)
    if extra_metadata:
        known = {fields.id_field, fields.text_field, fields.title_field, fields.url_field}
        raw_meta: Any = {k: v for k, v in record.items() if k not in known and v is not None}
    else:
        raw_meta = record.get(fields.metadata_field)
    metadata, problem = _normalise_metadata(raw_meta)
    if problem:
        return DeadLetter(source, problem, id=doc_id)
    return Document(id=doc_id, text=text, title=clean_text(title).strip(), url=url.strip(),
                    metadata=metadata, source=source)


def document_from_json_line(
    line: bytes, source: str, fields: FieldMap = FieldMap(),
    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
) -> ParseResult | None:
    """One JSONL line; ``None`` for a blank line (not a document)."""
    if len(line) > max_doc_bytes:
        return DeadLetter(source, f"document larger than --max-doc-bytes ({len(line)} > {max_doc_bytes} bytes)")
    try:
        decoded = line.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is not content
    except UnicodeDecodeError as exc:
        return DeadLetter(source, f"undecodable bytes (not UTF-8): {exc.reason} at byte {exc.start}",
                          excerpt=_excerpt(line[:200]))
    if not decoded.strip():
        return None
    try:
        record = json.loads(decoded)
    except json.JSONDecodeError as exc:
        return DeadLetter(source, f"malformed JSON: {exc.msg} at column {exc.colno}", excerpt=_excerpt(decoded))
    if not isinstance(record, dict):
        return DeadLetter(source, f"a JSONL line must be an object, got {type(record).__name__}",
                          excerpt=_excerpt(decoded))
    return document_from_record(record, source, fields)


def document_from_file(
    path: str, data: bytes, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES
) -> ParseResult:
    """A plain text or Markdown file is one document; its id is its path.

    The title is the first Markdown heading, if any.
    """
    if len(data) > max_doc_bytes:
        return DeadLetter(path, f"document larger than --max-doc-bytes ({len(data)} > {max_doc_bytes} bytes)", id=path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return DeadLetter(path, f"undecodable bytes (not UTF-8): {exc.reason} at byte {exc.start}", id=path)
    text = clean_text(text)
    if not text.strip():
        return DeadLetter(path, "empty text", id=path)
    title = ""
    for line in text.splitlines():
        if line.startswith("# "):
            title = line[2:].strip()
            break
    return Document(id=path, text=text, title=title, source=path)
