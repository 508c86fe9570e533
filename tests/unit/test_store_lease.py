"""rag_core/store/lease.py: the lease key and the holder's description (pure)."""

from __future__ import annotations

import json

import pytest

from rag_core.errors import ConfigError
from rag_core.store.lease import BuildLease, _describe, lease_key


def test_lease_key_is_per_knowledge_base_and_validated():
    assert lease_key("docs") == "beamrag:lease:docs" != lease_key("docs2")
    with pytest.raises(ConfigError):
        lease_key("bad name")


def test_the_holder_is_named_by_version_and_start_time():
    lease = BuildLease(None, "docs", "docs__v20260101t000000000000", started_at="2026-01-01T00:00:00+00:00")
    assert json.loads(lease.value)["token"] == lease.token
    assert _describe(lease.value) == "docs__v20260101t000000000000 (started 2026-01-01T00:00:00+00:00)"
    assert _describe(b"not json") == "another build"
    token, started_at, host, pid = lease.identity
    same = BuildLease(None, "docs", lease.version, token=token, started_at=started_at, host=host, pid=pid + 1)
    assert same.value != lease.value
    same = BuildLease(None, "docs", lease.version, token=token, started_at=started_at, host=host, pid=pid)
    assert same.value == lease.value  # the publish step rebuilds the holder's value from token + start time
    with pytest.raises(ConfigError):
        BuildLease(None, "docs", lease.version, ttl_s=0)
