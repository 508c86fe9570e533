"""rag_core.progress: the live counter's tally, its files and how the CLI sums them (no pipeline)."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from rag_core import progress
from rag_core.progress import ENV, FLUSH_SECONDS, ProgressCounter, read_counts


def wait_for(folder: Path, name: str, value: int) -> dict[str, int]:
    deadline = time.monotonic() + 10 * FLUSH_SECONDS + 5
    while time.monotonic() < deadline:
        counts = read_counts(folder)
        if counts.get(name) == value:
            return counts
        time.sleep(FLUSH_SECONDS / 5)
    return read_counts(folder)


def test_without_the_folder_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    c = ProgressCounter("documents_chunked")
    c.inc(5)
    assert c._tally is progress._NO_TALLY and list(tmp_path.iterdir()) == []


def test_counts_of_every_instance_are_summed(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path))
    a, b = ProgressCounter("chunks_written"), ProgressCounter("chunks_written")
    a.inc(3)
    b.inc(4)
    a.inc()
    assert wait_for(tmp_path, "chunks_written", 8) == {"chunks_written": 8}
    assert len(list(tmp_path.iterdir())) == 2  # one small file per instance, not per element


def test_a_pickled_counter_starts_its_own_tally(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path))
    c = ProgressCounter("questions_answered", namespace="beam_rag")
    c.inc(2)
    copy = pickle.loads(pickle.dumps(c))
    assert copy._tally is None and copy.namespace == "beam_rag"
    copy.inc(5)
    assert wait_for(tmp_path, "questions_answered", 7) == {"questions_answered": 7}


def test_a_removed_folder_stops_the_writes(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    monkeypatch.setenv(ENV, str(folder))
    c = ProgressCounter("documents_read")
    c.inc()
    wait_for(folder, "documents_read", 1)
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    c.inc()
    time.sleep(3 * FLUSH_SECONDS)
    assert not folder.exists() and c._tally is not None and c._tally.path is None


@pytest.mark.parametrize("content", ["", "x", "12a"])
def test_unreadable_files_are_skipped(tmp_path, content):
    (tmp_path / "docs.a").write_text(content)
    (tmp_path / "docs.b").write_text("5")
    assert read_counts(tmp_path) == {"docs": 5}
    assert read_counts(tmp_path / "missing") == {}
