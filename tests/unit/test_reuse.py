"""rag_core/reuse.py: when a build may reuse stored vectors, and the bytes round trip (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from rag_core.errors import ConfigError
from rag_core.reuse import REUSE_KEYS, LookUpStoredVectors, ReuseSource, plan_reuse, reuse_line, vector_from_bytes
from rag_core.store.connection import RedisConnection

LIVE = {"model": "m", "backend": "torch", "backend_family": "torch", "dimension": 384, "normalize": True,
        "max_seq_length": 256}


def test_same_settings_reuse_from_the_live_version():
    source, note = plan_reuse(LIVE, dict(LIVE, backend="onnx"), index="kb__v1", prefix="beamrag:kb:v1:")
    assert source == ReuseSource("kb__v1", "beamrag:kb:v1:", 384) and note == ""


@pytest.mark.parametrize("key, value", [("model", "n"), ("dimension", 768), ("backend_family", "onnx-int8"),
                                        ("normalize", False), ("max_seq_length", 128)])
def test_any_vector_changing_setting_turns_reuse_off(key, value):
    assert key in REUSE_KEYS
    source, note = plan_reuse(LIVE, dict(LIVE, **{key: value}), index="kb__v1", prefix="p:")
    assert source is None and note.startswith(f"embedding {key} changed") and "every chunk embedded" in note


def test_int8_vectors_of_the_per_batch_scheme_are_not_reused():
    int8 = dict(LIVE, backend="onnx-int8", backend_family="int8")
    now = dict(int8, quantization="int8-per-token")
    source, note = plan_reuse(int8, now, index="kb__v1", prefix="p:")  # built before the key was recorded
    assert source is None and note == ("embedding quantization changed ('int8-per-batch' -> 'int8-per-token'): "
                                       "every chunk embedded")
    assert plan_reuse(now, now, index="kb__v1", prefix="p:")[0] is not None
    fp32 = dict(LIVE, quantization="none")  # an fp32 index from before the key: reused as ever
    assert plan_reuse(LIVE, fp32, index="kb__v1", prefix="p:")[0] is not None


def test_no_live_version_or_no_record_means_no_reuse():
    assert plan_reuse(None, LIVE)[0] is None
    source, note = plan_reuse({}, LIVE)
    assert source is None and "does not record" in note


def test_vector_bytes_round_trip_exactly():
    raw = np.random.default_rng(0).standard_normal(384).astype(np.float32).tobytes()
    vector = vector_from_bytes(raw, 384)
    assert vector is not None and np.asarray(vector, dtype=np.float32).tobytes() == raw
    assert vector_from_bytes(raw[:-4], 384) is None and vector_from_bytes("text", 1) is None


def test_summary_line_and_config_checks():
    assert reuse_line(0, 0, None, "--no-reuse: every chunk embedded").startswith("0 of 0 chunks reused (")
    with pytest.raises(ConfigError):
        ReuseSource("kb__v1", "p:", 0)
    with pytest.raises(ConfigError):
        LookUpStoredVectors(RedisConnection.from_url("redis://127.0.0.1:6379"), None, batch_size=0)
