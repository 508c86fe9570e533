"""The CLI's deferred torch import: nothing imports torch until it is used, then the real one is used."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from pipelines.deferred_imports import DeferredModule, defer_import


@pytest.fixture()
def heavy_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package ``heavy_pkg`` that records each time its body runs."""
    package = tmp_path / "heavy_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        import os
        with open(os.environ["HEAVY_LOG"], "a") as log:
            log.write("loaded\\n")
        VALUE = 42
    """))
    (package / "sub.py").write_text("NAME = 'sub'\n")
    log = tmp_path / "loads.log"
    log.write_text("")
    monkeypatch.setenv("HEAVY_LOG", str(log))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield log
    for name in [n for n in sys.modules if n == "heavy_pkg" or n.startswith("heavy_pkg.")]:
        del sys.modules[name]


def test_the_module_runs_at_its_first_attribute_read_once(heavy_package: Path) -> None:
    assert defer_import("heavy_pkg") is True
    import heavy_pkg

    assert isinstance(heavy_pkg, DeferredModule) and not heavy_pkg.loaded
    assert heavy_package.read_text() == ""
    assert heavy_pkg.VALUE == 42
    assert heavy_pkg.loaded and heavy_package.read_text() == "loaded\n"
    real = sys.modules["heavy_pkg"]
    assert not isinstance(real, DeferredModule) and real.VALUE == 42
    assert heavy_pkg.VALUE == 42 and heavy_package.read_text() == "loaded\n"  # loaded once


def test_a_submodule_import_loads_the_real_package_and_reaches_it_through_the_stand_in(heavy_package: Path) -> None:
    defer_import("heavy_pkg")
    import heavy_pkg
    import heavy_pkg.sub

    assert heavy_pkg.sub.NAME == "sub"
    assert sys.modules["heavy_pkg"].sub is sys.modules["heavy_pkg.sub"]
    assert heavy_package.read_text() == "loaded\n"


def test_a_missing_name_still_raises_attribute_error(heavy_package: Path) -> None:
    defer_import("heavy_pkg")
    import heavy_pkg

    with pytest.raises(AttributeError):
        heavy_pkg.not_there  # noqa: B018


def test_nothing_changes_for_imported_dotted_or_missing_modules(heavy_package: Path) -> None:
    assert defer_import("os") is False and sys.modules["os"] is os
    assert defer_import("heavy_pkg.sub") is False and "heavy_pkg" not in sys.modules
    assert defer_import("no_such_module_anywhere") is False and "no_such_module_anywhere" not in sys.modules


def test_no_pipeline_module_reads_torch_at_import_and_torch_works_when_used() -> None:
    """What the CLI saves: Beam binds the stand-in, our modules never read it, first use loads real torch."""
    script = textwrap.dedent("""
        import sys
        from pipelines.deferred_imports import DeferredModule, defer_import
        assert defer_import("torch")
        stand_in = sys.modules["torch"]
        import apache_beam.ml.inference.base
        import pipelines.cli, pipelines.ingest, pipelines.query, pipelines.squad_eval, pipelines.evaluate
        import rag_core.embeddings
        assert not stand_in.loaded, "a module read torch at import"
        import torch.nn
        assert not isinstance(torch, DeferredModule) and stand_in.loaded
        assert float(torch.nn.Linear(2, 1)(torch.ones(1, 2)).shape[0]) == 1.0
        from apache_beam.ml.inference import model_manager
        assert model_manager.torch.cuda.is_available() in (True, False)
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
