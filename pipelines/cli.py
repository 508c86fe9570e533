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

from rag_core.errors import BeamRagError

EXIT_ERROR = 2


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False, default=str))


def unwrap_error(exc: BaseException) -> BeamRagError | None:
    """Find our own error inside whatever a runner wrapped it in."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BeamRagError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    import rag_core.errors as errors

    text = str(exc)
    for name in dir(errors):
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, BeamRagError) and f"{name}: " in text:
            message = text.split(f"{name}: ", 1)[1].splitlines()[0].strip().strip("'\"[]")
            return cls(message)
    return None


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
            out = {"info": catalog.info, "rollback": catalog.rollback, "drop": catalog.drop}[args.index_cmd]()
    finally:
        client.close()
    _print_json(out)
    return 0


def cmd_redis(args: argparse.Namespace) -> int:
    from rag_core.store.local_server import LocalRedis

    kwargs: dict[str, Any] = {}
    if args.port:
        kwargs["port"] = args.port
    if args.data_dir:
        from pathlib import Path

        kwargs["data_dir"] = Path(args.data_dir)
    server = LocalRedis(**kwargs)
    _print_json({"start": server.start, "stop": server.stop, "status": server.status}[args.redis_cmd]())
    return 0


def cmd_ingest(args: argparse.Namespace, rest: list[str]) -> int:
    from pipelines import ingest

    _print_json(ingest.run(rest))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="beam-rag", description="Batch RAG on Apache Beam and Redis")
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("ingest", help="build or update a knowledge base (Beam pipeline)", add_help=False)

    idx = sub.add_parser("index", help="inspect and manage knowledge-base versions")
    idx_sub = idx.add_subparsers(dest="index_cmd", required=True)
    idx_sub.add_parser("list").add_argument("--redis-url")
    for name in ("info", "rollback", "drop"):
        p = idx_sub.add_parser(name)
        p.add_argument("name")
        p.add_argument("--redis-url")

    red = sub.add_parser("redis", help="the embedded local Redis server")
    red.add_argument("redis_cmd", choices=["start", "stop", "status"])
    red.add_argument("--port", type=int, default=None)
    red.add_argument("--data-dir", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "ingest":
            return cmd_ingest(args, rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return {"index": cmd_index, "redis": cmd_redis}[args.command](args)
    except Exception as exc:  # the CLI boundary: one clear message, not a traceback
        ours = unwrap_error(exc)
        if ours is None or args.verbose:
            raise
        print(f"beam-rag: error: {ours}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
