"""What a person sees on a terminal: live progress, no library noise, tables vs ``--json``.

``ingest`` and ``query`` run as the real ``beam-rag`` process under a pseudo-terminal
(``pty``), so tqdm draws its bar in place as it would for a user.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import sys
import termios
from pathlib import Path

import pytest

from pipelines import cli

REPO = Path(__file__).resolve().parents[2]
NOISE = ("This output type hint will be ignored", "Loading weights", "de-quantizing GGUF", "Warning:",
         "DeprecationWarning", "FutureWarning", "UserWarning")


def run_in_pty(argv: list[str], timeout: float = 600) -> tuple[int, str]:
    """``beam-rag argv`` with stdout and stderr on a pseudo-terminal; its exit code and all it wrote."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, as a user starts it
        os.execvpe(sys.executable, [sys.executable, "-m", "pipelines.cli", *argv], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", errors="replace")


def last_json(text: str) -> dict:
    return json.loads(text.replace("\r", "\n").strip().splitlines()[-1])


@pytest.fixture(scope="module")
def corpus(facts, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli_output") / "docs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in facts), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli_output_q") / "questions.jsonl"
    rows = [{"id": "q1", "question": "What is the capital of Zorbania?"}, {"id": "q2", "question": "Why do bees dance?"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_ingest_and_query_show_live_progress_and_no_noise(corpus, questions, facts, redis_url, index_name,
                                                          tmp_path):
    name = index_name
    code, out = run_in_pty(["ingest", "--input", str(corpus), "--index", name, "--redis-url", redis_url])
    assert code == 0, out[-3000:]
    assert "beam-rag ingest: 100%" in out and f"{len(facts)}/{len(facts)}" in out and "\r" in out, out[-3000:]
    assert "chunks written=" in out
    assert [n for n in NOISE if n in out] == [], out[-3000:]
    assert last_json(out)["documents_indexed"] == len(facts)

    answers = tmp_path / "answers.jsonl"
    code, out = run_in_pty(["query", "--input", str(questions), "--output", str(answers), "--index", name,
                            "--redis-url", redis_url, "--max-new-tokens", "16"])
    assert code == 0, out[-3000:]
    assert "beam-rag query: 100%" in out and "2/2" in out and "questions" in out, out[-3000:]
    assert [n for n in NOISE if n in out] == [], out[-3000:]
    assert last_json(out)["questions_answered"] == 2


def test_quiet_prints_only_the_summary(corpus, facts, redis_url, index_name):
    code, out = run_in_pty(["--quiet", "ingest", "--input", str(corpus), "--index", index_name,
                            "--redis-url", redis_url])
    assert code == 0, out[-3000:]
    lines = [line for line in out.replace("\r", "\n").splitlines() if line.strip()]
    assert len(lines) == 1 and json.loads(lines[0])["documents_indexed"] == len(facts), out[-3000:]


def test_index_list_and_info_are_tables_unless_json(build_index, facts, redis_url, capsys):
    name = build_index("t_cli_output_kb", facts)
    assert cli.main(["index", "list", "--redis-url", redis_url]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["alias", "index", "num_docs", "model", "dimension", "versions", "error"]
    assert any(line.split()[0] == name and str(len(facts)) in line.split() for line in table[1:])
    assert cli.main(["index", "list", "--redis-url", redis_url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ours = next(row for row in rows if row["alias"] == name)  # other tests' indexes may be broken on purpose
    assert {"alias", "index", "num_docs", "model", "dimension", "versions"} <= set(ours)

    assert cli.main(["index", "info", name, "--redis-url", redis_url]) == 0
    info_text = capsys.readouterr().out
    assert info_text.splitlines()[0].split() == ["alias", name] and "current" in info_text
    with pytest.raises(ValueError):
        json.loads(info_text)
    assert cli.main(["index", "info", name, "--redis-url", redis_url, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["alias"] == name and info["num_docs"] == len(facts) and info["versions"][0]["current"]
