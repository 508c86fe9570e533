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
