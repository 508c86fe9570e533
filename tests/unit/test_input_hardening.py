"""Pure pieces behind the reliability/security fixes: URL parsing that never echoes a
password, TLS settings that fail closed, the scrubbed command line, bounded line
reading, and the document/name rules hostile input exercises."""

from __future__ import annotations

import io
import pickle

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import RedisOptions, resolve_connection
from rag_core.documents import MAX_METADATA_KEYS, document_from_json_line, document_from_record
from rag_core.errors import ConfigError
from rag_core.readers import bounded_lines
from rag_core.store.connection import RedisConnection, _redact
from rag_core.store.schema import IndexLayout, validate_index_name
from rag_core.types import DeadLetter, Document


class TestRedisUrl:
    @pytest.mark.parametrize("url", [
        "redis://:s3cr/et#x@127.0.0.1:6390/0",  # '/' and '#' in the password
        "redis://:12/34@127.0.0.1:6390/0",  # '/' that makes the rest look like a path
        "redis://user:a?b@127.0.0.1:6390/0",  # '?' starts a query
        "redis://:pw@127.0.0.1:notaport/0",
    ])
    def test_unparsable_user_info_is_refused_without_echoing_it(self, url: str) -> None:
        with pytest.raises(ConfigError, match="Percent-encode") as info:
            RedisConnection.from_url(url)
        for part in ("s3cr", "et#x", "12/34", "34@", "a?b", "pw@"):
            assert part not in str(info.value)

    def test_encoded_and_at_sign_passwords_round_trip(self) -> None:
        assert RedisConnection.from_url("redis://u:p%2Fw%23d%3F@h:1/0").password == "p/w#d?"
        conn = RedisConnection.from_url("redis://u:p@ss@h:1/0")  # the last '@' ends the user info
        assert conn.password == "p@ss" and conn.safe_url == "redis://h:1/0"

    def test_tls_files_need_a_rediss_url(self) -> None:
        with pytest.raises(ConfigError, match="--redis-ca-cert given but .* does not use TLS"):
            RedisConnection.from_url("redis://h:1/0", ssl_ca_certs="/ca.pem")
        assert RedisConnection.from_url("rediss://h:1/0", ssl_ca_certs="/ca.pem").uses_tls

    def test_tls_environment_applies_to_rediss_only(self) -> None:
        env = {"REDIS_SSL_CA_CERTS": "/ca.pem", "REDIS_PASSWORD": "pw"}
        plain = RedisConnection.from_env("redis://h:1/0", env=env)
        assert plain.ssl_ca_certs is None and plain.password == "pw"
        tls = RedisConnection.from_env("rediss://h:1/0", env=env, ssl_certfile="/c.pem")
        assert (tls.ssl_ca_certs, tls.ssl_certfile) == ("/ca.pem", "/c.pem")
        explicit = RedisConnection.from_env("rediss://h:1/0", env=env, ssl_ca_certs="/mine.pem")
        assert explicit.ssl_ca_certs == "/mine.pem"  # explicit flags win over the environment

    def test_redact_removes_plain_and_encoded_password(self) -> None:
        conn = RedisConnection.from_url("redis://:a%2Fb%40c@h:1/0")
        assert _redact("x a/b@c y a%2Fb%40c z", conn) == "x *** y *** z"


class TestScrubbedOptions:
    @pytest.mark.parametrize("flags", [["--redis-url", "redis://u:TopSecret1@h:1/0"],
                                       ["--redis_url=redis://u:TopSecret1@h:1/0"]])
    def test_password_leaves_the_options_and_their_pickle(self, flags: list[str]) -> None:
        options = PipelineOptions([*flags, "--job_name", "x"])
        conn = resolve_connection(options)
        assert conn.password == "TopSecret1"
        assert options.view_as(RedisOptions).redis_url == "redis://h:1/0"
        assert b"TopSecret1" not in pickle.dumps(options)
        assert "TopSecret1" not in str(options.get_all_options(retain_unknown_options=True))


class TestBoundedLines:
    @pytest.mark.parametrize("data, limit, expected", [
        (b"", 4, []),
        (b"\n\n", 4, [(b"", 0), (b"", 0)]),
        (b"abcd\nabcde\n", 4, [(b"abcd", 4), (None, 5)]),
        (b"ab\r\ncd", 4, [(b"ab\r", 3), (b"cd", 2)]),
        (b"x" * 10, 4, [(None, 10)]),
    ])
    def test_lines(self, data: bytes, limit: int, expected: list[tuple[bytes | None, int]]) -> None:
        for block in (1, 3, 1 << 20):
            assert list(bounded_lines(io.BytesIO(data), limit, block_size=block)) == expected


class TestHostileDocuments:
    def test_bom_is_not_content(self) -> None:
        doc = document_from_json_line(b'\xef\xbb\xbf{"id": "a", "text": "t"}', "s")
        assert isinstance(doc, Document) and doc.id == "a"

    @pytest.mark.parametrize("record, reason", [
        ({"id": "\x00\x01", "text": "t"}, "empty once control characters are removed"),
        ({"id": "a", "text": "t", "metadata": {"n": 10**400}}, "out of range"),
        ({"id": "a", "text": "t", "metadata": {f"k{i}": i for i in range(MAX_METADATA_KEYS + 1)}},
         "too many metadata keys"),
        ({"id": "a", "text": "t", "metadata": {"region\n": "x"}}, "is not allowed"),
    ])
    def test_dead_lettered(self, record: dict, reason: str) -> None:
        result = document_from_record(record, "s")
        assert isinstance(result, DeadLetter) and reason in result.reason

    def test_big_but_finite_numbers_are_kept(self) -> None:
        result = document_from_record({"id": "a", "text": "t", "metadata": {"n": 10**300, "f": 1e308}}, "s")
        assert isinstance(result, Document) and result.metadata["n"] == 10**300


class TestNames:
    @pytest.mark.parametrize("name", ["docs\n", "docs\r", "a b", "x}"])
    def test_trailing_newline_and_syntax_refused(self, name: str) -> None:
        with pytest.raises(ConfigError):
            validate_index_name(name)

    def test_version_must_match_whole(self) -> None:
        with pytest.raises(ConfigError):
            IndexLayout("docs", "v20260101t000000000000\n")
