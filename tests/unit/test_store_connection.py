"""rag_core.store.connection: URLs and credentials (never echoed), TLS settings that fail closed, retries."""

from __future__ import annotations

import pytest

from rag_core.errors import ConfigError
from rag_core.store.connection import RedisConnection, _redact


def test_connection_client_retries_under_its_policy():
    from rag_core.retry import NO_RETRY, RetryPolicy

    conn = RedisConnection.from_url("redis://h:1/0", retry=RetryPolicy(max_retries=3, backoff_s=0.5, max_backoff_s=1.0))
    retry = conn.client().get_retry()
    assert retry.get_retries() == 3
    assert [retry._backoff.compute(n) for n in (1, 2, 3)] == [0.5, 1.0, 1.0]
    assert conn.client(retry=NO_RETRY).get_retry().get_retries() == 0
    with pytest.raises(ConfigError, match="retry"):
        RedisConnection.from_url("redis://h:1/0", retry=3)


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


class TestCredentialsTravelAsReferences:
    def test_query_credentials_move_out_of_the_url_and_are_redacted(self) -> None:
        from rag_core.store.connection import redact_url

        conn = RedisConnection.from_url("redis://h:1/0?password=QsEcret9&username=bob&socket_timeout=2")
        assert conn.password == "QsEcret9" and conn.username == "bob"
        assert "QsEcret9" not in conn.url + conn.safe_url + repr(conn) and "socket_timeout=2" in conn.url
        assert redact_url("rediss://u:p@h:1/0?Password=x&db=2") == "rediss://h:1/0?db=2"
        with pytest.raises(ConfigError, match="not in url"):
            RedisConnection(url="redis://h:1/0?password=x")

    def test_a_password_file_is_read_where_the_client_is_built(self, tmp_path) -> None:
        import pickle

        from rag_core.store.connection import PasswordFile

        path = tmp_path / "pw"
        path.write_text("FileSecret42\n")
        conn = RedisConnection.from_url("redis://h:1/0", password_secret=PasswordFile(path))
        assert conn.resolved_password() == "FileSecret42"  # cached now ...
        assert b"FileSecret42" not in pickle.dumps(conn)  # ... but never pickled
        assert pickle.loads(pickle.dumps(conn)).resolved_password() == "FileSecret42"
        with pytest.raises(ConfigError, match="Cannot read the Redis password file"):
            RedisConnection.from_url("redis://h:1/0", password_secret=PasswordFile(tmp_path / "no")).client()

    def test_redis_password_from_the_process_environment_is_a_reference(self, monkeypatch) -> None:
        import pickle

        monkeypatch.setenv("REDIS_PASSWORD", "EnvSecret77")
        conn = RedisConnection.from_env("redis://h:1/0")
        assert conn.password is None and conn.resolved_password() == "EnvSecret77"
        assert b"EnvSecret77" not in pickle.dumps(conn)

    def test_gcp_secret_reference_pickles_without_a_value(self) -> None:
        import pickle

        from apache_beam.utils.secret import GcpSecret

        conn = RedisConnection.from_url("redis://h:1/0", password_secret=GcpSecret("projects/p/secrets/s/versions/1"))
        assert b"projects/p/secrets/s/versions/1" in pickle.dumps(conn)
