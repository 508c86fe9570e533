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
import time
from pathlib import Path
from typing import Any, Sequence

import pytest
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipelines import cli, progress, query
from rag_core.progress import ENV, FLUSH_SECONDS, QUESTIONS_SETTLED, read_counts

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



def test_verbose_multi_process_ingest_counts_every_worker_and_brings_the_library_logs_back(
        corpus, facts, redis_url, index_name):
    code, out = run_in_pty(["--verbose", "ingest", "--input", str(corpus), "--index", index_name,
                            "--redis-url", redis_url, "--no-reuse",
                            "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"])
    assert code == 0, out[-3000:]
    [summary] = [json.loads(line) for line in out.replace("\r", "\n").splitlines() if line.startswith('{"index"')]
    # The counts come from the worker processes, the last of them written as each one exits.
    assert f"{len(facts)}/{len(facts)}" in out and f"chunks written={summary['chunks_written']}" in out, out[-3000:]
    assert "This output type hint will be ignored" in out  # Beam's own log, which the default output hides

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


class _NoModel:
    """The stub's model (Beam's model sharing holds a weak reference to it)."""


class SlowStubGenerator(ModelHandler[str, PredictionResult, _NoModel]):
    """A stand-in generator: one prompt per batch, a pause each, and a look at the live tallies."""

    def __init__(self, seen: str) -> None:
        super().__init__()
        self.seen = seen

    def load_model(self) -> _NoModel:
        return _NoModel()

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": 1, "max_batch_size": 1}

    def run_inference(self, batch: Sequence[str], model: _NoModel,
                      inference_args: dict[str, Any] | None = None) -> list[PredictionResult]:
        time.sleep(FLUSH_SECONDS * 1.5)  # the earlier batches' counts reach their files
        with open(self.seen, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(read_counts(os.environ[ENV])) + "\n")
        return [PredictionResult(p, "A stub answer.", "stub") for p in batch]


def test_the_query_bar_moves_while_answers_are_generated(build_index, facts, redis_url, tmp_path, capsys):
    """Under the DirectRunner the sink runs after every generation; the bar must not sit at 0 until then."""
    name = build_index("t_cli_output_kb", facts)
    n = 5
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is fact {i} about?"}) + "\n"
                                 for i in range(n)), encoding="utf-8")
    seen = tmp_path / "seen.jsonl"
    progress.configure(progress.Verbosity.NORMAL)
    try:
        summary = query.run(["--input", str(questions), "--output", str(tmp_path / "a.jsonl"), "--index", name,
                             "--redis-url", redis_url, "--min-score", "-1", "--abstain-below", "0",  # every one generated
                             "--no-large-model"],
                            generator_handler=SlowStubGenerator(str(seen)))
    finally:
        progress.configure(None)
    assert summary["questions_answered"] == n
    views = [json.loads(line) for line in seen.read_text().splitlines()]
    assert len(views) == n
    # By the last generation the earlier ones show (one flush may still be on its way),
    # before any answer has reached the sink.
    assert views[-1].get(QUESTIONS_SETTLED, 0) >= n - 2 > views[-1].get("questions_answered", 0), views
    err = capsys.readouterr().err
    assert "beam-rag query: 100%" in err and f"{n}/{n}" in err, err[-2000:]
