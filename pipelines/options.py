"""Pipeline flags as Beam ``PipelineOptions``, so every standard Beam flag
(``--runner``, ``--project``, ``--temp_location`` ...) passes through untouched.
"""

from __future__ import annotations

import os
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from rag_core.store.connection import RedisConnection


class RedisOptions(PipelineOptions):
    """Where Redis is. Credentials may be in the URL or in REDIS_USERNAME / REDIS_PASSWORD."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--redis-url", "--redis_url", dest="redis_url", default=None,
                            help="Redis URL (redis:// or rediss://). Default: $REDIS_URL, else the "
                                 "embedded local Redis, started if needed.")
        parser.add_argument("--redis-ca-cert", dest="redis_ca_cert", default=None,
                            help="CA bundle for rediss:// (or $REDIS_SSL_CA_CERTS)")
        parser.add_argument("--redis-client-cert", dest="redis_client_cert", default=None,
                            help="client certificate for mutual TLS (or $REDIS_SSL_CERTFILE)")
        parser.add_argument("--redis-client-key", dest="redis_client_key", default=None,
                            help="client key for mutual TLS (or $REDIS_SSL_KEYFILE)")


class EmbeddingOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--embedding-model", dest="embedding_model", default=None,
                            help="sentence-transformers model (default all-MiniLM-L6-v2, packaged offline copy)")
        parser.add_argument("--embedding-backend", dest="embedding_backend", default="torch",
                            choices=["torch", "onnx", "onnx-int8"],
                            help="inference backend for embeddings (default torch)")
        parser.add_argument("--embedding-batch-size", dest="embedding_batch_size", type=int, default=32)


def resolve_connection(options: PipelineOptions) -> RedisConnection:
    """``--redis-url``, else ``$REDIS_URL``, else the embedded local server (started if needed).

    Afterwards the option holds the URL without credentials, so Beam's display
    data and logs never carry the password; the connection object carries it.
    """
    ropts = options.view_as(RedisOptions)
    url = ropts.redis_url or os.environ.get("REDIS_URL")
    tls = {"ssl_ca_certs": ropts.redis_ca_cert, "ssl_certfile": ropts.redis_client_cert,
           "ssl_keyfile": ropts.redis_client_key}
    if not url:
        from rag_core.store.local_server import ensure_running

        url = ensure_running()
    conn = RedisConnection.from_env(url, **tls)
    ropts.redis_url = conn.safe_url
    _scrub_flags(options, conn.safe_url)
    return conn


_URL_FLAGS = ("--redis-url", "--redis_url")


def _scrub_flags(options: PipelineOptions, safe_url: str) -> None:
    """Replace the URL in the raw command line the options keep (``_flags``) too.

    Beam pickles ``PipelineOptions`` with those flags (e.g. ``save_main_session``,
    runners that ship the options object), so a password typed in ``--redis-url``
    would otherwise travel, and could be shown, with them.
    """
    flags = getattr(options, "_flags", None)
    if not flags:
        return
    scrubbed: list[str] = []
    replace_next = False
    for flag in flags:
        if replace_next:
            scrubbed.append(safe_url)
            replace_next = False
        elif flag in _URL_FLAGS:
            scrubbed.append(flag)
            replace_next = True
        elif flag.startswith(tuple(f + "=" for f in _URL_FLAGS)):
            scrubbed.append(flag.split("=", 1)[0] + "=" + safe_url)
        else:
            scrubbed.append(flag)
    flags[:] = scrubbed
