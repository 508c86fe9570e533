"""rag_core.paths: where local state lives, and the atomic, locked build of a cache folder."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rag_core.paths import beam_rag_home, build_cached_folder, cache_dir, dead_letter_dir, redis_data_dir


class TestLocations:
    def test_home_and_its_folders(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("BEAM_RAG_CACHE_DIR", raising=False)
        monkeypatch.setenv("BEAM_RAG_HOME", str(tmp_path / "home"))
        assert beam_rag_home() == tmp_path / "home"
        assert cache_dir() == tmp_path / "home" / "models"
        assert dead_letter_dir() == tmp_path / "home" / "dead-letters"
        assert redis_data_dir() == tmp_path / "home" / "redis"
        monkeypatch.delenv("BEAM_RAG_HOME")
        assert beam_rag_home() == Path.home() / ".beam-rag"
        assert cache_dir() == Path.home() / ".beam-rag" / "models"

    def test_cache_dir_env_wins_over_the_home(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BEAM_RAG_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("BEAM_RAG_HOME", str(tmp_path / "home"))
        assert cache_dir() == tmp_path / "cache"

    def test_user_folders_are_expanded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BEAM_RAG_HOME", "~/rag-home")
        monkeypatch.setenv("BEAM_RAG_CACHE_DIR", "~/rag-cache")
        assert beam_rag_home() == Path.home() / "rag-home"
        assert cache_dir() == Path.home() / "rag-cache"


def _complete(folder: Path) -> bool:
    return (folder / "done").is_file()


class TestBuildCachedFolder:
    def test_builds_once_and_reuses(self, tmp_path: Path) -> None:
        calls: list[Path] = []

        def build(folder: Path) -> None:
            calls.append(folder)
            (folder / "done").write_text("x")

        target = tmp_path / "cache" / "model"
        assert build_cached_folder(target, build, _complete) == target
        assert build_cached_folder(target, build, _complete) == target
        assert len(calls) == 1 and calls[0].parent == target.parent and calls[0] != target
        assert (target / "done").read_text() == "x"
        assert target.stat().st_mode & 0o777 == 0o755  # not mkdtemp's private 0700
        assert sorted(p.name for p in target.parent.iterdir()) == [".model.lock", "model"]

    def test_concurrent_callers_build_once(self, tmp_path: Path) -> None:
        calls: list[int] = []

        def build(folder: Path) -> None:
            calls.append(1)
            time.sleep(0.2)  # long enough for the other thread to reach the lock
            (folder / "done").write_text("x")

        target = tmp_path / "model"
        threads = [threading.Thread(target=build_cached_folder, args=(target, build, _complete)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert calls == [1] and _complete(target)

    def test_a_failed_build_leaves_nothing_behind(self, tmp_path: Path) -> None:
        def build(folder: Path) -> None:
            (folder / "half").write_text("x")
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            build_cached_folder(tmp_path / "model", build, _complete)
        assert [p.name for p in tmp_path.iterdir()] == [".model.lock"]

    def test_a_build_that_is_not_complete_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(RuntimeError, match="incomplete folder"):
            build_cached_folder(tmp_path / "model", lambda folder: None, _complete)
        assert not (tmp_path / "model").exists()

    def test_an_incomplete_leftover_is_replaced(self, tmp_path: Path) -> None:
        leftover = tmp_path / "model"
        leftover.mkdir()
        (leftover / "stale").write_text("old")
        build_cached_folder(leftover, lambda folder: (folder / "done").write_text("new"), _complete)
        assert sorted(p.name for p in leftover.iterdir()) == ["done"]
