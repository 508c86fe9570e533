"""The knowledge-base catalog: versions of an index, the alias that serves one,
and the publish / rollback / drop operations a scheduled rebuild relies on.

State lives in Redis itself (one hash per alias, one JSON value per version),
so any worker or CLI sees the same truth, and the alias switch is one atomic
FT.ALIASUPDATE.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from rag_core.errors import IndexNotFoundError, PublishRefusedError
from rag_core.store.info import index_status
from rag_core.store.schema import (
    KEY_ROOT, MAX_INDEX_FIELDS, TAG_SEPARATOR, VERSION_PATTERN, FieldKind, IndexLayout, VectorIndexSpec,
    catalog_key, merge_field_kinds, metadata_field, schema_dict, validate_index_name,
)

_LOG = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class VersionRecord:
    """What the catalog knows about one index version."""

    version: str
    index: str
    prefix: str
    state: str  # building | ready
    created_at: str
    embedding: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    published_at: str | None = None
    chunks: int | None = None
    documents: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> "VersionRecord":
        return cls(**json.loads(raw))

    def vector_spec(self) -> VectorIndexSpec:
        return VectorIndexSpec(**self.spec)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class IndexCatalog:
    """Versions and alias of one knowledge base. The caller owns ``client``."""

    def __init__(self, client: Any, alias: str):
        self.client = client
        self.alias = validate_index_name(alias)
        self._key = catalog_key(alias)

    # -- reading -------------------------------------------------------------
    def versions(self) -> list[VersionRecord]:
        raw = self.client.hgetall(self._key)
        records = [VersionRecord.from_json(v) for v in raw.values()]
        return sorted(records, key=lambda r: r.version)

    def get(self, version: str) -> VersionRecord | None:
        raw = self.client.hget(self._key, version)
        return VersionRecord.from_json(raw) if raw else None

    def current_index(self) -> str | None:
        status = index_status(self.client, self.alias)
        return status.index_name if status else None

    def current(self) -> VersionRecord:
        """The version the alias serves; ``IndexNotFoundError`` if there is none."""
        index = self.current_index()
        if index is None:
            raise IndexNotFoundError(
                f"Index {self.alias!r} does not exist: build it with `beam-rag ingest --index {self.alias} ...`"
            )
        record = self.get(IndexLayout.from_index_name(index).version)
        if record is None:
            raise IndexNotFoundError(f"Index {self.alias!r} points at {index!r}, which the catalog does not know")
        return record

    def info(self) -> dict[str, Any]:
        """The ``beam-rag index info`` object."""
        current = self.current()
        stats = index_status(self.client, current.index)
        return {
            "alias": self.alias,
            "index": current.index,
            "version": current.version,
            "num_docs": stats.num_docs if stats else 0,
            "documents": current.documents,
            "indexing": stats.indexing if stats else False,
            "model": current.embedding.get("model"),
            "dimension": current.embedding.get("dimension"),
            "embedding": current.embedding,
            "index_type": current.spec.get("algorithm"),
            "metadata_fields": current.spec.get("metadata_fields", {}),
            "published_at": current.published_at,
            "versions": [
                {"version": r.version, "index": r.index, "state": r.state, "chunks": r.chunks,
                 "created_at": r.created_at, "published_at": r.published_at,
                 "current": r.index == current.index}
                for r in self.versions()
            ],
        }

    @staticmethod
    def list_aliases(client: Any) -> list[str]:
        prefix = f"{KEY_ROOT}:catalog:"
        names = {_s(k)[len(prefix):] for k in client.scan_iter(match=prefix + "*", count=500)}
        return sorted(names)

    # -- building ------------------------------------------------------------
    def register_build(self, layout: IndexLayout, embedding: dict[str, Any], spec: VectorIndexSpec) -> VersionRecord:
        record = VersionRecord(version=layout.version, index=layout.index_name, prefix=layout.prefix,
                               state="building", created_at=_now(), embedding=embedding,
                               spec=asdict(spec))
        self.client.hset(self._key, layout.version, record.to_json())
        return record

    def _save(self, record: VersionRecord) -> None:
        self.client.hset(self._key, record.version, record.to_json())

    def ensure_index(self, record: VersionRecord, metadata_fields: dict[str, FieldKind],
                     chunks: int = 0) -> VersionRecord:
        """Create the version's FT index, or add newly seen metadata fields to it.

        ``chunks``: how many the version holds, which decides ``--index-type auto``
        (:meth:`~rag_core.store.schema.VectorIndexSpec.for_size`); the record keeps the
        resolved type.
        """
        from redisvl.index import SearchIndex
        from redisvl.schema import IndexSchema

        layout = IndexLayout(self.alias, record.version)
        spec = record.vector_spec().for_size(chunks)
        merged = merge_field_kinds(spec.metadata_fields, metadata_fields)
        new_spec = replace(spec, metadata_fields=merged)
        fields = len(schema_dict(layout, new_spec)["fields"])
        if fields > MAX_INDEX_FIELDS:
            raise PublishRefusedError(
                f"Refusing to index {layout.index_name}: the documents use {len(merged)} distinct metadata keys, "
                f"and RediSearch allows {MAX_INDEX_FIELDS} fields per index ({fields - len(merged)} are "
                "built in). Keep fewer distinct keys (put free-form data in the text).")
        if index_status(self.client, layout.index_name) is None:
            schema = IndexSchema.from_dict(schema_dict(layout, new_spec))
            SearchIndex(schema, redis_client=self.client).create(overwrite=False)
        else:
            for key, kind in sorted(merged.items()):
                if key not in spec.metadata_fields:
                    args: list[Any] = [metadata_field(key), kind.upper()]
                    if kind == "tag":
                        args += ["SEPARATOR", TAG_SEPARATOR, "CASESENSITIVE"]
                    self.client.execute_command("FT.ALTER", layout.index_name, "SCHEMA", "ADD", *args)
        record = replace(record, spec=asdict(new_spec))
        self._save(record)
        return record

    def wait_indexed(self, index: str, expected: int, timeout_s: float = 600.0) -> int:
        """Block until Redis has indexed every key; returns the searchable count."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            status = index_status(self.client, index)
            num_docs = status.num_docs if status else 0
            if (status is None or status.ready) and num_docs >= expected:
                return num_docs
            if time.monotonic() > deadline:
                return num_docs
            time.sleep(delay)
            delay = min(delay * 2, 0.25)  # a build waits for this: poll finely

    def publish(self, version: str, written: int, documents: int, metadata_fields: dict[str, FieldKind],
                max_shrink: float = 0.5, keep_versions: int = 1, timeout_s: float = 600.0,
                lease: Any = None) -> dict[str, Any]:
        """Index, verify and atomically serve a finished rebuild, then prune old versions.

        Any refusal leaves the alias on the last complete version and removes the
        refused build's keys. With ``lease`` (a :class:`~rag_core.store.lease.BuildLease`)
        the alias moves only while the build still holds it (checked in the same
        transaction), and pruning stops as soon as it does not.
        """
        record = self.get(version)
        if record is None:
            raise PublishRefusedError(f"Version {version!r} of {self.alias!r} was never registered")
        try:
            if written <= 0:
                raise PublishRefusedError(
                    f"Refusing to publish an empty build of {self.alias!r}: no chunks were written "
                    "(check the input path and the dead-letter output)")
            record = self.ensure_index(record, metadata_fields, written)
            searchable = self.wait_indexed(record.index, written, timeout_s)
            if searchable != written:
                raise PublishRefusedError(
                    f"Build {record.index} is incomplete: {searchable} chunks searchable, {written} written")
            previous = self.current_index()
            if previous is not None:
                prev_status = index_status(self.client, previous)
                prev_docs = prev_status.num_docs if prev_status else 0
                if prev_docs and searchable < prev_docs * (1.0 - max_shrink):
                    raise PublishRefusedError(
                        f"Refusing to publish {record.index}: it has {searchable} chunks, the live version "
                        f"has {prev_docs} (shrank by more than --max-shrink {max_shrink:.0%}); "
                        "rerun with a larger --max-shrink if this is intended")
        except PublishRefusedError:
            self.drop_version(version)
            raise
        if lease is None:
            self.client.ft(record.index).aliasupdate(self.alias)
        else:
            lease.fenced(f"publish {record.index}",
                         lambda pipe: pipe.execute_command("FT.ALIASUPDATE", self.alias, record.index))
        record = replace(record, state="ready", published_at=_now(), chunks=searchable, documents=documents)
        self._save(record)
        dropped = self.prune(keep_versions, current=record.version, lease=lease)
        _LOG.info("Published %s as %s (%d chunks); dropped %s", record.index, self.alias, searchable, dropped)
        return {"alias": self.alias, "index": record.index, "chunks": searchable, "documents": documents,
                "previous": previous, "dropped": dropped}

    def record_upsert(self, version: str, documents: int) -> dict[str, Any]:
        """After an upsert into the live version: refresh its counts."""
        record = self.get(version)
        if record is None:
            raise IndexNotFoundError(f"Version {version!r} of {self.alias!r} is not in the catalog")
        status = index_status(self.client, record.index)
        num_docs = status.num_docs if status else 0
        self._save(replace(record, chunks=num_docs))
        return {"alias": self.alias, "index": record.index, "chunks": num_docs, "documents": documents}

    # -- maintenance ---------------------------------------------------------
    def prune(self, keep_versions: int, current: str, lease: Any = None) -> list[str]:
        """Drop ready versions beyond ``keep_versions`` older ones, abandoned builds that
        started before ``current``, and the keys of older versions the catalog has no
        record of (only while ``lease``, if given, is still held)."""
        dropped: list[str] = []
        records = self.versions()
        older_ready = [r for r in records if r.state == "ready" and r.version < current]
        keep = {r.version for r in older_ready[-keep_versions:]} if keep_versions > 0 else set()
        doomed = [r.version for r in records
                  if r.version != current and r.version not in keep and (r.state == "ready" or r.version < current)]
        doomed += [v for v in self.unrecorded_versions(records) if v < current]
        for version in doomed:
            if lease is not None and not lease.held():
                _LOG.warning("Build lease of %s lost: not pruning %s", self.alias, version)
                break
            self.drop_version(version)
            dropped.append(version)
        return dropped

    def unrecorded_versions(self, records: list[VersionRecord] | None = None) -> list[str]:
        """Versions that have keys under this knowledge base's prefix but no catalog record.

        Every build records itself before it writes, so these are leftovers (a record
        deleted by hand, a catalog restored from an older backup): found by SCAN of
        ``beamrag:<alias>:v…:`` so that pruning and ``index drop`` remove them too.
        ``records``: the catalog's records when the caller has just read them.
        """
        root = f"{KEY_ROOT}:{self.alias}:"
        recorded = {r.version for r in (self.versions() if records is None else records)}
        found: set[str] = set()
        for raw in self.client.scan_iter(match=root + "v*", count=1000):
            version, sep, _ = _s(raw)[len(root):].partition(":")
            if sep and VERSION_PATTERN.fullmatch(version) and version not in recorded:
                found.add(version)
        return sorted(found)

    def drop_version(self, version: str) -> None:
        """Drop a version's FT index and every key under its prefix (batched UNLINK)."""
        layout = IndexLayout(self.alias, version)
        if layout.index_name == self.current_index():
            raise PublishRefusedError(f"{layout.index_name} is live; roll back or drop the whole index instead")
        if index_status(self.client, layout.index_name) is not None:
            self.client.execute_command("FT.DROPINDEX", layout.index_name)
        batch: list[Any] = []
        for key in self.client.scan_iter(match=layout.prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.unlink(*batch)
                batch = []
        if batch:
            self.client.unlink(*batch)
        self.client.hdel(self._key, version)

    def rollback(self) -> dict[str, Any]:
        """Point the alias at the newest ready version older than the live one."""
        current = self.current()
        older = [r for r in self.versions() if r.state == "ready" and r.version < current.version
                 and index_status(self.client, r.index) is not None]
        if not older:
            raise IndexNotFoundError(f"No earlier version of {self.alias!r} is kept to roll back to "
                                     "(see --keep-versions)")
        target = older[-1]
        self.client.ft(target.index).aliasupdate(self.alias)
        return {"alias": self.alias, "index": target.index, "previous": current.index}

    def drop(self) -> dict[str, Any]:
        """Remove the alias and every version of this knowledge base."""
        records = self.versions()
        versions = [r.version for r in records] + self.unrecorded_versions(records)
        if index_status(self.client, self.alias) is not None:
            self.client.ft(self.alias).aliasdel(self.alias)
        for version in versions:
            self.drop_version(version)
        self.client.delete(self._key)
        if not versions:
            raise IndexNotFoundError(f"Index {self.alias!r} does not exist")
        return {"alias": self.alias, "dropped": versions}


def drop_knowledge_base(connection: Any, alias: str) -> None:
    """Drop ``alias`` with every version and key; nothing to do if it does not exist."""
    client = connection.client()
    try:
        IndexCatalog(client, alias).drop()
    except IndexNotFoundError:
        pass
    finally:
        client.close()
