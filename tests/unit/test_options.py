"""pipelines.options: Beam flags resolved into rag_core configs; the password leaves them."""

from __future__ import annotations

import pickle

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import RedisOptions, resolve_connection


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


class TestPasswordReferences:
    def test_password_file_flag_is_a_reference(self, tmp_path) -> None:
        from rag_core.store.connection import PasswordFile

        secret = tmp_path / "pw"
        secret.write_text("FlagFileSecret\n")
        conn = resolve_connection(PipelineOptions(["--redis-url", "redis://h:1/0", "--redis-password-file",
                                                   str(secret)]))
        assert conn.password is None and conn.password_secret == PasswordFile(secret)
        assert conn.resolved_password() == "FlagFileSecret" and b"FlagFileSecret" not in pickle.dumps(conn)

    def test_password_secret_flag_builds_beams_gcp_secret(self) -> None:
        from apache_beam.utils.secret import GcpSecret

        version = "projects/p/secrets/redis/versions/3"
        for flag in ("--redis-password-secret", "--redis_password_secret"):
            conn = resolve_connection(PipelineOptions(["--redis-url", "redis://h:1/0", flag, version]))
            assert isinstance(conn.password_secret, GcpSecret) and conn.password is None
            assert conn.password_secret._version_name == version  # read by each worker, not here
