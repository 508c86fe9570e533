"""The CLI as a user meets it: exit codes, one-line errors, `ask`, `index` commands."""

from __future__ import annotations

import json

import pytest

from pipelines import cli, ingest

DOCS = [
    {"id": "zorb", "title": "Zorbania", "text": "The capital of Zorbania is Quillport, a harbour city on the coast."},
    {"id": "bees", "title": "Bees", "text": "Honey bees communicate the location of flowers with a waggle dance."},
    {"id": "tides", "title": "Tides", "text": "Ocean tides are caused mainly by the gravitational pull of the Moon."},
]


@pytest.fixture(scope="module")
def kb(tmp_path_factory, redis_url):
    path = tmp_path_factory.mktemp("cli") / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    name = "t_cli_kb"
    ingest.run(["--input", str(path), "--index", name, "--redis-url", redis_url])
    return name, path


def test_ask_answers_with_sources(kb, redis_url, capsys):
    name, _ = kb
    code = cli.main(["ask", "What is the capital of Zorbania?", "--index", name, "--redis-url", redis_url,
                     "--max-new-tokens", "24"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Quillport" in out.split("Sources")[0]
    assert "1. [" in out and "Zorbania" in out.split("Sources")[1].splitlines()[1]


def test_ask_json_retrieval_only_and_abstains_off_topic(kb, redis_url, capsys):
    name, _ = kb
    assert cli.main(["ask", "Why do bees dance?", "--index", name, "--redis-url", redis_url,
                     "--retrieval-only", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["answer"] is None and row["sources"][0]["doc_id"] == "bees"
    assert cli.main(["ask", "Recommend a pasta recipe with basil", "--index", name, "--redis-url", redis_url,
                     "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["answer"] == "I don't know" and row["sources"] == []


def test_index_info_list_rollback_drop(kb, tmp_path, redis_url, capsys):
    name, path = kb
    assert cli.main(["index", "info", name, "--redis-url", redis_url]) == 0
    first = json.loads(capsys.readouterr().out)
    assert {"alias", "index", "num_docs", "versions"} <= set(first) and first["num_docs"] == 3
    copy = "t_cli_copy"
    ingest.run(["--input", str(path), "--index", copy, "--redis-url", redis_url])
    ingest.run(["--input", str(path), "--index", copy, "--redis-url", redis_url])
    assert cli.main(["index", "list", "--redis-url", redis_url]) == 0
    assert {name, copy} <= {row["alias"] for row in json.loads(capsys.readouterr().out)}
    assert cli.main(["index", "info", copy, "--redis-url", redis_url]) == 0
    before = json.loads(capsys.readouterr().out)
    assert cli.main(["index", "rollback", copy, "--redis-url", redis_url]) == 0
    rolled = json.loads(capsys.readouterr().out)
    assert rolled["previous"] == before["index"] and rolled["index"] != before["index"]
    assert cli.main(["index", "drop", copy, "--redis-url", redis_url]) == 0
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
