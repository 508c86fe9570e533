"""rag_core.store.schema: index names, versioned layouts and the RediSearch schema."""

from __future__ import annotations

import pytest
from redisvl.schema import IndexSchema

from rag_core.errors import ConfigError
from rag_core.store.schema import (FLAT_MAX_CHUNKS, IndexLayout, VectorIndexSpec, new_version_id, schema_dict,
                                   validate_index_name)


@pytest.mark.parametrize("name", ["my index", "a{b}", "", "1abc", "a*", "a:b", "x" * 65, "a__b", "é"])
def test_hostile_index_names_are_refused(name):
    with pytest.raises(ConfigError, match="Invalid index name"):
        validate_index_name(name)


def test_layout_keys_and_round_trip():
    layout = IndexLayout("docs", new_version_id())
    assert layout.key("d#0") == f"beamrag:docs:{layout.version}:d#0"
    assert IndexLayout.from_index_name(layout.index_name) == layout


def test_parse_an_alias_or_a_pinned_version():
    layout = IndexLayout("docs", new_version_id())
    assert IndexLayout.parse("docs") == ("docs", None)
    assert IndexLayout.parse(layout.index_name) == ("docs", layout)
    for bad, match in (("docs__v1", "Invalid index version"), ("a b", "Invalid index name"), (3, "must be a string")):
        with pytest.raises(ConfigError, match=match):
            IndexLayout.parse(bad)


def test_schema_has_metadata_fields_and_vector():
    layout = IndexLayout("docs", new_version_id())
    schema = IndexSchema.from_dict(schema_dict(layout, VectorIndexSpec(
        384, algorithm="flat", metadata_fields={"lang": "tag", "year": "numeric"})))
    assert schema.index.prefix == layout.prefix
    assert {"text", "doc_id", "embedding", "md_lang", "md_year"} <= set(schema.field_names)


def test_spec_validation():
    with pytest.raises(ConfigError):
        VectorIndexSpec(0)
    with pytest.raises(ConfigError):
        VectorIndexSpec(4, algorithm="ivf")


def test_auto_resolves_by_size_and_is_never_sent_to_redis_unresolved():
    auto = VectorIndexSpec(384, algorithm="auto", hnsw_m=8, metadata_fields={"lang": "tag"})
    assert auto.for_size(FLAT_MAX_CHUNKS).algorithm == "flat"
    big = auto.for_size(FLAT_MAX_CHUNKS + 1)
    assert big.algorithm == "hnsw" and big.hnsw_m == 8 and big.metadata_fields == {"lang": "tag"}
    assert VectorIndexSpec(384, algorithm="flat").for_size(10**7).algorithm == "flat"
    layout = IndexLayout("docs", new_version_id())
    with pytest.raises(ConfigError, match="resolve"):
        schema_dict(layout, auto)
    vector = [f for f in schema_dict(layout, big)["fields"] if f["name"] == "embedding"][0]["attrs"]
    assert vector["algorithm"] == "hnsw" and vector["m"] == 8


class TestNames:
    @pytest.mark.parametrize("name", ["docs\n", "docs\r", "a b", "x}"])
    def test_trailing_newline_and_syntax_refused(self, name: str) -> None:
        with pytest.raises(ConfigError):
            validate_index_name(name)

    def test_version_must_match_whole(self) -> None:
        with pytest.raises(ConfigError):
            IndexLayout("docs", "v20260101t000000000000\n")
