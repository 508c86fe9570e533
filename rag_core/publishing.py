"""The build's last step: once every write landed, publish the version (or refresh its counts).

It runs once, on the build's single merged ``WriteSummary``. A rebuild verifies the
new version (chunk count, shrink limit, Redis has indexed it all) and points the
alias at it in one atomic command; an upsert makes sure the live index knows the
metadata fields written and records the new document count.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from rag_core.errors import PublishRefusedError, RedisUnavailableError
from rag_core.ingestion import WriteSummary
from rag_core.sinks import METRICS_NAMESPACE
from rag_core.store.catalog import IndexCatalog
from rag_core.store.connection import RedisConnection
from rag_core.store.deletion import delete_missing
from rag_core.store.schema import IndexLayout

__all__ = ["PublishFn"]


class PublishFn(beam.DoFn):
    """``WriteSummary`` → the catalog's publish (``rebuild=True``) or upsert result.

    Args:
        connection: where the catalog is; one client per call, closed after.
        layout: the version this build wrote.
        rebuild: publish ``layout`` as the alias's new version; False refreshes the
            live version's counts (upsert).
        max_shrink, keep_versions, timeout_s: see ``IndexCatalog.publish``.
        lease: the build lease's ``identity`` (token, start, host, pid): publish and prune only while it is held.
        delete_missing: upsert only: delete the live version's documents whose ids are not in
            the ``input_ids`` side input; refused when input records were dead-lettered
            (``dead_letters`` side input: their ids are unknown, so they would be deleted).
    """

    def __init__(self, connection: RedisConnection, layout: IndexLayout, rebuild: bool, max_shrink: float,
                 keep_versions: int, timeout_s: float, lease: tuple[str, str, str, int] | None = None,
                 delete_missing: bool = False, dead_letter_path: str = ""):
        self.connection = connection
        self.layout = layout
        self.rebuild = rebuild
        self.max_shrink = max_shrink
        self.keep_versions = keep_versions
        self.timeout_s = timeout_s
        self.lease = lease
        self.delete_missing = delete_missing
        self.dead_letter_path = dead_letter_path
        self._indexed = Metrics.counter(METRICS_NAMESPACE, "documents_indexed")
        self._deleted = Metrics.counter(METRICS_NAMESPACE, "documents_deleted")

    def process(self, summary: WriteSummary, input_ids: Iterable[str] = (),
                dead_letters: int = 0) -> Iterator[dict[str, Any]]:
        import redis

        client = self.connection.client()
        try:
            catalog = IndexCatalog(client, self.layout.alias)
            version = self.layout.version
            lease = None
            if self.lease is not None:
                from rag_core.store.lease import BuildLease

                token, started_at, host, pid = self.lease
                lease = BuildLease(client, self.layout.alias, self.layout.index_name, token=token,
                                   started_at=started_at, host=host, pid=pid)
            if self.rebuild:
                result = catalog.publish(version, summary.chunks, summary.documents, summary.metadata_fields,
                                         self.max_shrink, self.keep_versions, self.timeout_s, lease=lease)
            else:
                record = catalog.get(version)
                assert record is not None
                catalog.ensure_index(record, summary.metadata_fields, (record.chunks or 0) + summary.chunks)
                deleted = self._delete_missing(client, record.prefix, input_ids, dead_letters, lease)
                result = catalog.record_upsert(version, summary.documents)
                result["documents_deleted"] = deleted
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # After the client's own bounded retries. The alias switch is one atomic command:
            # either it happened or the previous version is still the one served.
            raise RedisUnavailableError(
                f"Publishing {self.layout.index_name} in Redis at {self.connection.safe_url} failed: "
                f"{type(exc).__name__}. Every chunk was written; rerun the build (the abandoned version "
                "is cleaned up when a later build publishes)") from None
        finally:
            client.close()
        self._indexed.inc(summary.documents)
        yield result

    def _delete_missing(self, client: Any, prefix: str, input_ids: Iterable[str], dead_letters: int,
                        lease: Any) -> int:
        if not self.delete_missing:
            return 0
        if dead_letters:
            raise PublishRefusedError(
                f"The upsert into {self.layout.index_name} landed, but --delete-missing deleted nothing: "
                f"{dead_letters} input record(s) were dead-lettered ({self.dead_letter_path}), so the input's "
                "ids are not known in full. Fix them and rerun")
        if lease is not None and not lease.held():
            raise PublishRefusedError(f"Build lease of {self.layout.alias} lost: --delete-missing deleted nothing")
        deleted = delete_missing(client, prefix, set(input_ids), self.max_shrink, self.layout.index_name)
        self._deleted.inc(deleted)
        return deleted
