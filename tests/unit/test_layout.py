"""The package layout: data flows one way, ``pipelines`` → ``rag_core``, with no import cycle.

Imports are read with ``ast`` from every module under ``pipelines/`` and
``rag_core/``, including those inside functions (a function-level import cycle
still couples two modules), and the graph restricted to project modules must be
acyclic.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "rag_core")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imported(path: Path, name: str, modules: set[str]) -> set[str]:
    """Project modules ``path`` imports anywhere (``from pkg import mod`` counts as ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` also imports a.b and a
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported(path, name, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert {"pipelines", "rag_core", "pipelines.cli", "rag_core.answers"} <= set(graph)
    assert "pipelines.ingest" in graph["pipelines.cli"]  # imported inside cmd_pipeline
    assert "rag_core.sinks" in graph["rag_core.generation"]  # imported inside KeyedGeneratorHandler
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_rag_core_never_imports_pipelines() -> None:
    offenders = {name: sorted(d for d in deps if d.split(".")[0] == "pipelines")
                 for name, deps in import_graph().items() if name.split(".")[0] == "rag_core"}
    assert {name: deps for name, deps in offenders.items() if deps} == {}


def test_commands_share_parts_not_each_other() -> None:
    """``ask`` and ``evaluate`` use rag_core's parts, not the query pipeline's module."""
    graph = import_graph()
    assert "pipelines.query" not in graph["pipelines.ask"]
    assert "pipelines.query" not in graph["pipelines.evaluate"]
    for name in ("pipelines.ingest", "pipelines.query", "pipelines.evaluate", "pipelines.ask",
                 "pipelines.options", "pipelines.command"):
        assert "pipelines.cli" not in graph[name], f"{name} imports the CLI"


# --------------------------------------------------------------------------- what the build names exists


def makefile_paths() -> set[str]:
    """Repository files the Makefile's recipes and prerequisites name (``benchmarks/run_all.py``, ...)."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    found = set(re.findall(r"(?<![\w$/.-])((?:[\w-]+/)*[\w-]+\.(?:py|txt|toml|cfg|ini|json|ya?ml|ipynb))\b", text))
    return {path for path in found if not path.startswith(".")}


def test_every_file_the_makefile_names_exists() -> None:
    paths = makefile_paths()
    assert {"benchmarks/run_all.py", "pyproject.toml", "constraints.txt"} <= paths
    assert sorted(p for p in paths if not (REPO / p).is_file()) == []


def test_torch_is_pinned_to_the_cpu_build_and_installed_from_the_cpu_index() -> None:
    """PyPI's plain torch is the CUDA build: the project's own files must choose the CPU one."""
    pins = [line.split("#")[0].strip() for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()]
    assert any(p.startswith("torch==") and p.endswith("+cpu") for p in pins)
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    torch_step = next(line for line in makefile.splitlines() if "pip install" in line and line.rstrip().endswith(" torch"))
    assert "-c constraints.txt" in torch_step and "--extra-index-url $(TORCH_INDEX)" in torch_step
    assert "TORCH_INDEX ?= https://download.pytorch.org/whl/cpu" in makefile


def test_every_package_data_pattern_matches_a_file() -> None:
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"]
    empty = [f"{package}/{pattern}" for package, patterns in package_data.items() for pattern in patterns
             if not any(p.is_file() for p in (REPO / package).glob(pattern))]
    assert empty == []
    assert (REPO / "rag_core" / "py.typed").read_bytes() == b""  # PEP 561 marker: the package is typed


# --------------------------------------------------------------------------- doctests run, imports do nothing


def test_doctests_of_both_packages_are_collected() -> None:
    options = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert {"rag_core", "pipelines"} <= set(options["testpaths"]) and "--doctest-modules" in options["addopts"]
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "--ignore=tests"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    ids = done.stdout.splitlines()
    assert any(i.startswith("rag_core/") and "::rag_core." in i for i in ids), done.stdout[-2000:]
    assert any(i.startswith("pipelines/") and "::pipelines." in i for i in ids), done.stdout[-2000:]


_IMPORT_ALL = """
import importlib, json, os, sys, threading
before = dict(os.environ)
for name in sys.argv[1:]:
    importlib.import_module(name)
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
threads = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon)
print(json.dumps({"env": changed, "threads": threads}))
"""


def test_importing_every_module_has_no_side_effects(tmp_path: Path) -> None:
    """Collection imports every module (doctests): that must write nothing, start nothing, set nothing."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "BEAM_RAG_HOME": str(home / "beam-rag"),
           "BEAM_RAG_CACHE_DIR": str(home / "cache"), "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    modules = sorted(name for name in project_modules() if not name.endswith("__main__"))
    done = subprocess.run([sys.executable, "-c", _IMPORT_ALL, *modules], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"env": [], "threads": []}
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["home"]


def test_test_file_names_are_unique() -> None:
    """pytest's default import mode keys test modules by basename: a unit and an integration file
    with the same name would not both be collected (hence ``test_enrichment_redis.py``)."""
    names = [p.name for p in sorted((REPO / "tests").rglob("test_*.py"))]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_every_module_is_in_the_documented_layout() -> None:
    """CONTRIBUTING.md's layout and the README's code-layout table name every module."""
    contributing = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    layout = contributing[contributing.index("## Layout"):contributing.index("## Rules")]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| path | job |"):readme.index("## How a rebuild stays safe")]
    files = sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if p.name != "__init__.py")
    for doc, text in (("CONTRIBUTING.md", layout), ("README.md", table)):
        missing = [str(p.relative_to(REPO)) for p in files if f"{p.name}`" not in text and f"{p.name}," not in text]
        assert missing == [], f"{doc} does not list {missing}"
