"""Pipeline flags as Beam ``PipelineOptions``, so every standard Beam flag
(``--runner``, ``--project``, ``--temp_location`` ...) passes through untouched.

Beam builds one parser from every direct ``PipelineOptions`` subclass, whichever
pipeline runs, so each flag is defined exactly once, here: the flags both pipelines
take (``--input``, ``--index``, ``--dead-letter``) in :class:`CommonOptions`, read
with ``options.view_as(CommonOptions)``. No flag is ``required=True`` (it would
break the other pipeline in the same process); each plan checks its own.
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from rag_core.answers import ABSTAIN, DEFAULT_ABSTAIN_BELOW, DEFAULT_MIN_SCORE
from rag_core.documents import DEFAULT_MAX_DOC_BYTES
from rag_core.embeddings.config import EmbeddingBackend
from rag_core.enrichment import RetrievalMode
from rag_core.context import DEFAULT_CONTEXT_TOKENS, DEFAULT_SENTENCES_PER_PASSAGE
from rag_core.generation import DEFAULT_GENERATOR, DEFAULT_MAX_NEW_TOKENS, DTYPES, GeneratorBackend
from rag_core.prompt import PromptStyle
from rag_core.questions import DEFAULT_MAX_QUESTION_CHARS, INPUT_FORMATS
from rag_core.readers import FORMATS
from rag_core.sinks import OUTPUT_FORMATS
from rag_core.store.connection import RedisConnection
from rag_core.store.schema import FLAT_MAX_CHUNKS

EMBEDDING_BACKENDS = tuple(b.value for b in EmbeddingBackend)
_LOG = logging.getLogger(__name__)


class BuildMode(str, Enum):
    """``beam-rag ingest --mode``."""

    REBUILD = "rebuild"
    """Write a new version under its own key prefix; publish it once complete (atomic alias switch)."""
    UPSERT = "upsert"
    """Write into the live version, idempotently (builds the first version if there is none)."""


def _choices(enum: type[Enum]) -> list[str]:
    return [member.value for member in enum]


class CommonOptions(PipelineOptions):
    """The flags every pipeline takes."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--input", default=None,
                            help="input files: a path or glob, local or gs:// (required)")
        parser.add_argument("--index", default=None, help="knowledge-base name, the alias queries use (required)")
        parser.add_argument("--dead-letter", dest="dead_letter", default=None,
                            help="JSONL file for the records not processed (default: ingest, under "
                                 "$BEAM_RAG_HOME/dead-letters; query, <output>.dead-letter.jsonl)")


class IngestOptions(PipelineOptions):
    """``beam-rag ingest``: reading, chunking, the index and its publication."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--format", default="auto", choices=list(FORMATS))
        parser.add_argument("--mode", default=BuildMode.REBUILD.value, choices=_choices(BuildMode))
        parser.add_argument("--id-field", dest="id_field", default="id")
        parser.add_argument("--text-field", dest="text_field", default="text")
        parser.add_argument("--title-field", dest="title_field", default="title")
        parser.add_argument("--max-doc-bytes", dest="max_doc_bytes", type=int, default=DEFAULT_MAX_DOC_BYTES)
        parser.add_argument("--chunk-tokens", dest="chunk_tokens", type=int, default=256)
        parser.add_argument("--chunk-overlap", dest="chunk_overlap", type=int, default=32)
        parser.add_argument("--max-chunks-per-doc", dest="max_chunks_per_doc", type=int, default=0,
                            help="index only each document's first N chunks (0 = all); documents cut "
                                 "short are counted in the summary as documents_truncated")
        parser.add_argument("--index-type", dest="index_type", default="auto", choices=["auto", "hnsw", "flat"],
                            help="vector index of a new version: flat (exact search), hnsw, or auto (default): "
                                 f"flat up to {FLAT_MAX_CHUNKS:,} chunks, where it indexes ~20x faster and "
                                 "searches in a few ms, hnsw above")
        parser.add_argument("--hnsw-m", dest="hnsw_m", type=int, default=16)
        parser.add_argument("--hnsw-ef-construction", dest="hnsw_ef_construction", type=int, default=200)
        parser.add_argument("--ef-runtime", dest="ef_runtime", type=int, default=100,
                            help="default HNSW EF_RUNTIME stored with the index (100: recall@10 against "
                                 "exact search 0.997 on SciFact, 64: 0.991; benchmarks/retrieval_quality.py)")
        parser.add_argument("--max-shrink", dest="max_shrink", type=float, default=0.5,
                            help="refuse to publish a rebuild that shrank by more than this fraction "
                                 "(and --delete-missing deleting more than it)")
        parser.add_argument("--delete-missing", dest="delete_missing", action="store_true",
                            help="--mode upsert: delete the documents the input no longer has (a rebuild "
                                 "always holds exactly the input)")
        parser.add_argument("--keep-versions", dest="keep_versions", type=int, default=1,
                            help="older versions kept for rollback")
        parser.add_argument("--publish-timeout", dest="publish_timeout", type=float, default=600.0)
        parser.add_argument("--write-batch-size", dest="write_batch_size", type=int, default=256)
        parser.add_argument("--wait-for-lock", dest="wait_for_lock", type=float, default=0.0,
                            help="seconds to wait while another build of the index holds its build lease "
                                 "(0: exit 2 at once, naming the running build)")
        parser.add_argument("--no-reuse", "--full", dest="reuse", action="store_false",
                            help="embed every chunk again (by default a chunk whose content hash the live "
                                 "version holds keeps its stored vector; an embedding change turns reuse off)")
        parser.add_argument("--write-max-retries", dest="write_max_retries", type=int, default=8,
                            help="retries of one batch of Redis writes (exponential backoff from 0.2 s, "
                                 "at most 5 s apart) before the job fails")


class QueryOptions(PipelineOptions):
    """``beam-rag query``: output, retrieval, prompt and generation."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--output", default=None,
                            help="answers file (or BigQuery table spec with --output-format bigquery)")
        parser.add_argument("--output-format", dest="output_format", default="jsonl", choices=OUTPUT_FORMATS)
        parser.add_argument("--num-shards", dest="num_shards", type=int, default=0,
                            help="output shards; 0 (default) writes exactly one file named --output")
        parser.add_argument("--input-format", dest="input_format", default="auto", choices=INPUT_FORMATS,
                            help="auto: JSONL for .jsonl/.ndjson/.json, else one question per line")
        parser.add_argument("--max-question-chars", dest="max_question_chars", type=int,
                            default=DEFAULT_MAX_QUESTION_CHARS)
        parser.add_argument("--top-k", dest="top_k", type=int, default=5, help="passages retrieved per question")
        parser.add_argument("--min-score", dest="min_score", type=float, default=None,
                            help="drop passages below this cosine similarity; a question with none left is "
                                 f"answered {ABSTAIN!r} without the generator (default {DEFAULT_MIN_SCORE}; "
                                 "with --retrieval-only, default none; -1 keeps every passage)")
        parser.add_argument("--search-ef-runtime", dest="search_ef_runtime", type=int, default=None,
                            help="HNSW EF_RUNTIME for these searches "
                                 "(default: the index's, at least 64 and 2 x --top-k)")
        parser.add_argument("--retrieval", dest="retrieval", default="hybrid", choices=_choices(RetrievalMode),
                            help="hybrid (default): KNN and BM25 over text and title, fused (rag_core.hybrid; "
                                 "SQuAD 2.0 dev: hit@5 of the sources given 0.93 vs 0.83, F1 0.28 vs 0.25); "
                                 "dense: vector KNN only; --min-score applies to the cosine similarity in both")
        parser.add_argument("--retrieval-batch-size", dest="retrieval_batch_size", type=int, default=32,
                            help="questions per Redis round trip")
        parser.add_argument("--retrieval-only", dest="retrieval_only", action="store_true",
                            help="skip generation: answer is null, sources are the ranked passages")
        parser.add_argument("--generator", default=DEFAULT_GENERATOR,
                            help="generator model: 'smollm2' (packaged default), a hub id or a local folder")
        parser.add_argument("--generator-backend", dest="generator_backend", default=GeneratorBackend.TORCH.value,
                            choices=_choices(GeneratorBackend),
                            help="torch (default): the checkpoint's weights (--dtype); torch-int8: int8 Linear layers "
                                 "on the CPU (faster prefill on long prompts, less accurate on small models)")
        parser.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                            help="answer length limit; the compact style also stops at the first sentence")
        parser.add_argument("--context-tokens", dest="context_tokens", type=int, default=DEFAULT_CONTEXT_TOKENS,
                            help="the generator reads the retrieved sentences most similar to the question, up to "
                                 f"this many tokens (default {DEFAULT_CONTEXT_TOKENS}); 0 gives it whole passages")
        parser.add_argument("--sentences-per-passage", dest="sentences_per_passage", type=int,
                            default=DEFAULT_SENTENCES_PER_PASSAGE,
                            help="with --context-tokens: the best sentences of every retrieved passage the generator "
                                 f"reads first, budget allowing (default {DEFAULT_SENTENCES_PER_PASSAGE})")
        parser.add_argument("--abstain-below", dest="abstain_below", type=float, default=DEFAULT_ABSTAIN_BELOW,
                            help=f"answer {ABSTAIN!r} when the answer's confidence (retrieval similarity, "
                                 "generator log-probability, grounding) is below this, 0..1 "
                                 f"(default {DEFAULT_ABSTAIN_BELOW}; 0 never)")
        parser.add_argument("--no-typed-answers", dest="typed_answers", action="store_false", default=True,
                            help="keep the generator's answer even when the question asks for a date, a number or "
                                 "a name (by default that span is read off the retrieved text)")
        parser.add_argument("--no-prefix-cache", dest="prefix_cache", action="store_false", default=True,
                            help="run every prompt whole (by default the instructions and worked examples every "
                                 "prompt of a batch starts with run once: same answers, less prefill)")
        parser.add_argument("--max-prompt-tokens", dest="max_prompt_tokens", type=int, default=1536)
        parser.add_argument("--prompt-style", dest="prompt_style", default=PromptStyle.COMPACT.value,
                            choices=_choices(PromptStyle),
                            help="compact (default): short instructions small models follow; full: "
                                 "rag_core.prompt's default instructions")
        parser.add_argument("--prompt-template", dest="prompt_template", default=None,
                            help="file with a $context / $question template (replaces the style's template)")
        parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
        parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
        parser.add_argument("--model-copies", dest="model_copies", type=int, default=1)
        parser.add_argument("--no-large-model", dest="large_model", action="store_false",
                            help="load one model per worker process instead of one per machine")
        parser.add_argument("--generation-batch-size", dest="generation_batch_size", type=int, default=8)
        parser.add_argument("--model-state-dict-path", dest="model_state_dict_path", default=None)
        parser.add_argument("--model-name", dest="model_name", default=None,
                            help="config/tokenizer source for --model-state-dict-path")


class RedisOptions(PipelineOptions):
    """Where Redis is, and where its password is read from (never the command line, ideally)."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--redis-url", "--redis_url", dest="redis_url", default=None,
                            help="Redis URL (redis:// or rediss://). Default: $REDIS_URL, else the "
                                 "embedded local Redis, started if needed.")
        parser.add_argument("--redis-password-file", "--redis_password_file", dest="redis_password_file", default=None,
                            help="file whose first line is the Redis password, read by each worker "
                                 "(default: $REDIS_PASSWORD, else the embedded server's own file)")
        parser.add_argument("--redis-password-secret", "--redis_password_secret", dest="redis_password_secret", default=None,
                            help="Google Secret Manager version holding the password, read by each worker: "
                                 "projects/P/secrets/S/versions/V")
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
        parser.add_argument("--embedding-backend", dest="embedding_backend", default=None,
                            choices=EMBEDDING_BACKENDS,
                            help="inference backend for embeddings. ingest: onnx-int8 for a new index or a "
                                 "rebuild (1.3-1.4x torch's speed), an upsert keeps the live version's; "
                                 "query: the index's own")
        parser.add_argument("--embedding-batch-size", dest="embedding_batch_size", type=int, default=32)


def resolve_connection(options: PipelineOptions) -> RedisConnection:
    """``--redis-url``, else ``$REDIS_URL``, else the embedded local server (started if needed).

    The password: one typed into the URL (works, with a warning: ``ps`` shows it and
    it travels with the job), else ``--redis-password-file``, ``--redis-password-secret``,
    ``$REDIS_PASSWORD``, else the embedded server's own password file. All but the
    first travel as references that the workers read in ``setup()``.

    Afterwards the option holds the URL without credentials, so Beam's display
    data and logs never carry the password.
    """
    from rag_core.store.connection import PasswordFile
    from rag_core.store.local_server import local_password_file, running_server

    ropts = options.view_as(RedisOptions)
    url = ropts.redis_url or os.environ.get("REDIS_URL")
    tls = {"ssl_ca_certs": ropts.redis_ca_cert, "ssl_certfile": ropts.redis_client_cert,
           "ssl_keyfile": ropts.redis_client_key}
    secret: Any = None
    if ropts.redis_password_file:
        secret = PasswordFile(ropts.redis_password_file)
    elif ropts.redis_password_secret:
        from apache_beam.utils.secret import GcpSecret

        secret = GcpSecret(ropts.redis_password_secret)
    if not url:
        server = running_server()
        url = server.url
        if secret is None and server.password_file.is_file():
            secret = PasswordFile(server.password_file)
        conn = RedisConnection.from_url(url, password_secret=secret, **tls)
    else:
        conn = RedisConnection.from_url(url, **tls)
        if conn.password is not None:
            _LOG.warning("The Redis password in the URL is visible to other users (ps) and travels with the "
                         "job: prefer --redis-password-file or REDIS_PASSWORD")
        elif secret is None and not os.environ.get("REDIS_PASSWORD"):
            parts = urlsplit_safe(conn.url)
            local = local_password_file(*parts)
            secret = PasswordFile(local) if local is not None else None
        if secret is not None and conn.password is None:
            conn = RedisConnection.from_url(url, password_secret=secret, **tls)
        conn = RedisConnection.from_env(conn.url, **_credentials(conn), **tls)
    ropts.redis_url = conn.safe_url
    _scrub_flags(options, conn.safe_url)
    return conn


_URL_FLAGS = ("--redis-url", "--redis_url")


def urlsplit_safe(url: str) -> tuple[str | None, int | None]:
    """``(host, port)`` of a URL, ``(None, None)`` when it has none."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return parts.hostname, parts.port
    except ValueError:
        return None, None


def _credentials(conn: RedisConnection) -> dict[str, Any]:
    """The credential fields of ``conn``, to carry through ``from_env`` (set ones win there)."""
    return {"username": conn.username, "password": conn.password, "password_secret": conn.password_secret}


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
