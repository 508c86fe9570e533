import pytest
from redisvl.schema import IndexSchema

from rag_core.errors import ConfigError
from rag_core.ingestion import chunk_to_record
from rag_core.store.connection import RedisConnection
from rag_core.store.schema import IndexLayout, VectorIndexSpec, new_version_id, schema_dict, validate_index_name
from rag_core.types import Chunk, Content, Embedding


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


def test_connection_client_retries_under_its_policy():
    from rag_core.retry import NO_RETRY, RetryPolicy

    conn = RedisConnection.from_url("redis://h:1/0", retry=RetryPolicy(max_retries=3, backoff_s=0.5, max_backoff_s=1.0))
    retry = conn.client().get_retry()
    assert retry.get_retries() == 3
    assert [retry._backoff.compute(n) for n in (1, 2, 3)] == [0.5, 1.0, 1.0]
    assert conn.client(retry=NO_RETRY).get_retry().get_retries() == 0
    with pytest.raises(ConfigError, match="retry"):
        RedisConnection.from_url("redis://h:1/0", retry=3)


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


class TestConnection:
    def test_credentials_leave_the_url(self):
        conn = RedisConnection.from_url("rediss://user:p%40ss@host:6380/1")
        assert conn.username == "user" and conn.password == "p@ss"
        assert conn.safe_url == "rediss://host:6380/1" and conn.uses_tls
        assert "p@ss" not in repr(conn)

    def test_env_credentials(self):
        conn = RedisConnection.from_env(env={"REDIS_URL": "redis://h:1/0", "REDIS_PASSWORD": "pw"})
        assert conn.password == "pw" and conn.safe_url == "redis://h:1/0"

    def test_bad_scheme(self):
        with pytest.raises(ConfigError):
            RedisConnection.from_url("http://x")
