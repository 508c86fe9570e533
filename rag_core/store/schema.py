"""Index names, versions, key layout and the redisvl schema of a chunk index.

A knowledge base is an alias (the name users type) over versioned indexes
(``{alias}__{version}``), each with its own key prefix, so a rebuild never
touches the version being served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

from rag_core.errors import ConfigError

NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")  # fullmatch: "$" would allow a trailing newline
VERSION_PATTERN = re.compile(r"v\d{8}t\d{12}")
KEY_ROOT = "beamrag"
# TAG separator: a control character that cleaned text never contains, so
# commas, pipes and spaces inside ids and metadata values stay literal.
TAG_SEPARATOR = "\x1f"
META_PREFIX = "md_"
# RediSearch refuses a schema of more fields than this ("Schema is limited to 1024 fields").
MAX_INDEX_FIELDS = 1024

Algorithm = Literal["hnsw", "flat", "auto"]
# ``auto`` (the build default) indexes a version of at most this many chunks FLAT (exact
# search), a larger one HNSW. Measured on SciFact's 9,938 chunks (all-MiniLM-L6-v2, 384
# dimensions, RediSearch 2.10, one round trip included): indexing them took 5.7-6.9 s
# HNSW (M 16, EF_CONSTRUCTION 200) and 0.3 s FLAT, a top-10 search 0.84 ms HNSW and
# 1.97 ms FLAT. A FLAT search grows with the corpus (~4 ms at this limit); HNSW costs
# ~0.6 s of single-threaded indexing per 1,000 chunks on every rebuild (Redis indexes a
# version at publish, when the build waits for it).
FLAT_MAX_CHUNKS = 20_000
FieldKind = Literal["tag", "numeric"]


def validate_index_name(name: str) -> str:
    """Index and alias names: a letter, then letters, digits, ``_`` or ``-`` (max 64).

    They end up in key prefixes and FT.* commands, so nothing else is allowed.

    >>> validate_index_name("docs_v2")
    'docs_v2'
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"Invalid index name {name!r}: use a letter, then letters, digits, '_' or '-' "
            "(at most 64 characters)"
        )
    if "__" in name:
        raise ConfigError(f"Invalid index name {name!r}: '__' is reserved for version names")
    return name


def new_version_id(now: datetime | None = None) -> str:
    """A sortable version id from the UTC clock, e.g. ``v20261125t101500123456``."""
    now = now or datetime.now(timezone.utc)
    return "v" + now.strftime("%Y%m%dt%H%M%S%f")


@dataclass(frozen=True)
class IndexLayout:
    """Where one version of a knowledge base lives in Redis."""

    alias: str
    version: str

    def __post_init__(self) -> None:
        validate_index_name(self.alias)
        if not VERSION_PATTERN.fullmatch(self.version):
            raise ConfigError(f"Invalid index version {self.version!r}")

    @classmethod
    def from_index_name(cls, index_name: str) -> "IndexLayout":
        """The layout of a version's index name (``{alias}__{version}``).

        >>> IndexLayout.from_index_name("docs__v20260101t000000000000").prefix
        'beamrag:docs:v20260101t000000000000:'
        """
        alias, sep, version = index_name.rpartition("__")
        if not sep:
            raise ConfigError(f"{index_name!r} is not a versioned index name")
        return cls(alias, version)

    @classmethod
    def parse(cls, name: str) -> tuple[str, "IndexLayout | None"]:
        """What a user names as an index: an alias, or one pinned version of it.

        Returns ``(alias, layout)``, with ``layout`` None for a bare alias (whichever
        version it serves when asked).

        >>> IndexLayout.parse("docs")
        ('docs', None)
        >>> IndexLayout.parse("docs__v20260101t000000000000")[1].version
        'v20260101t000000000000'
        """
        if not isinstance(name, str):
            raise ConfigError(f"index must be a string, got {type(name).__name__}")
        if "__" in name:
            layout = cls.from_index_name(name)
            return layout.alias, layout
        return validate_index_name(name), None

    @property
    def index_name(self) -> str:
        return f"{self.alias}__{self.version}"

    @property
    def prefix(self) -> str:
        return f"{KEY_ROOT}:{self.alias}:{self.version}:"

    def key(self, chunk_id: str) -> str:
        return self.prefix + chunk_id


def catalog_key(alias: str) -> str:
    """The hash that records every version of ``alias`` (one JSON value per version)."""
    return f"{KEY_ROOT}:catalog:{validate_index_name(alias)}"


def metadata_field(key: str) -> str:
    """Hash field (and schema field) that holds metadata ``key``."""
    return META_PREFIX + key


@dataclass(frozen=True)
class VectorIndexSpec:
    """Everything FT.CREATE needs besides names."""

    dim: int
    algorithm: Algorithm = "hnsw"
    distance: Literal["cosine", "ip", "l2"] = "cosine"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_runtime: int = 100  # recall@10 vs exact 0.997 at M 16 / EF_CONSTRUCTION 200 (SciFact)
    metadata_fields: dict[str, FieldKind] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ConfigError(f"vector dimension must be positive, got {self.dim}")
        if self.algorithm not in ("hnsw", "flat", "auto"):
            raise ConfigError(f"--index-type must be auto, hnsw or flat, got {self.algorithm!r}")
        if self.distance not in ("cosine", "ip", "l2"):
            raise ConfigError(f"distance must be cosine, ip or l2, got {self.distance!r}")
        for kind in self.metadata_fields.values():
            if kind not in ("tag", "numeric"):
                raise ConfigError(f"metadata field kind must be tag or numeric, got {kind!r}")

    def for_size(self, chunks: int) -> "VectorIndexSpec":
        """The spec an index of ``chunks`` chunks is created with: ``auto`` resolved.

        >>> auto = VectorIndexSpec(384, "auto")
        >>> auto.for_size(9_938).algorithm, auto.for_size(10**6).algorithm
        ('flat', 'hnsw')
        >>> VectorIndexSpec(384, "hnsw").for_size(10).algorithm
        'hnsw'
        """
        if self.algorithm != "auto":
            return self
        return replace(self, algorithm="flat" if chunks <= FLAT_MAX_CHUNKS else "hnsw")


def schema_dict(layout: IndexLayout, spec: VectorIndexSpec) -> dict[str, Any]:
    """The redisvl schema (``IndexSchema.from_dict``) of one index version (``auto`` resolved first)."""
    if spec.algorithm == "auto":
        raise ConfigError("resolve --index-type auto (VectorIndexSpec.for_size) before creating the index")
    vector_attrs: dict[str, Any] = {
        "dims": spec.dim,
        "algorithm": spec.algorithm,
        "distance_metric": spec.distance,
        "datatype": "float32",
    }
    if spec.algorithm == "hnsw":
        vector_attrs.update(m=spec.hnsw_m, ef_construction=spec.hnsw_ef_construction,
                            ef_runtime=spec.hnsw_ef_runtime)
    tag = {"separator": TAG_SEPARATOR, "case_sensitive": True}
    fields: list[dict[str, Any]] = [
        {"name": "text", "type": "text"},
        {"name": "title", "type": "text", "attrs": {"weight": 2.0}},
        {"name": "doc_id", "type": "tag", "attrs": tag},
        {"name": "chunk_id", "type": "tag", "attrs": tag},
        {"name": "content_hash", "type": "tag", "attrs": tag},
        {"name": "chunk_index", "type": "numeric"},
        {"name": "embedding", "type": "vector", "attrs": vector_attrs},
    ]
    for key, kind in sorted(spec.metadata_fields.items()):
        fields.append({"name": metadata_field(key), "type": kind,
                       **({"attrs": tag} if kind == "tag" else {})})
    return {
        "index": {"name": layout.index_name, "prefix": layout.prefix, "key_separator": ":",
                  "storage_type": "hash"},
        "fields": fields,
    }


def merge_field_kinds(a: dict[str, FieldKind], b: dict[str, FieldKind]) -> dict[str, FieldKind]:
    """Combine metadata field kinds seen in two places: a key seen as text anywhere is a tag.

    >>> merge_field_kinds({"year": "numeric"}, {"year": "tag", "lang": "tag"})
    {'year': 'tag', 'lang': 'tag'}
    """
    out = dict(a)
    for key, kind in b.items():
        out[key] = "tag" if out.get(key, kind) == "tag" or kind == "tag" else "numeric"
    return out
