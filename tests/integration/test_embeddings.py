"""rag_core.embeddings with the real packaged all-MiniLM-L6-v2: every backend against
torch, the ONNX export cache, and the MLTransform step in a real DirectRunner pipeline.

The ONNX export (fp32 + int8, ~10-20 s) runs once per session into a temporary cache.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.rag.types import Chunk, Content
from apache_beam.testing.util import BeamAssertException, assert_that

from rag_core.embeddings import (
    EmbeddingConfig, OnnxExport, OnnxTransformerModel, embed_texts, embedding_transform, ensure_onnx_export,
    load_sentence_transformer,
)
from rag_core.errors import ModelNotAvailableError

SENTENCES = [
    "The cat sits on the mat.",
    "Proteins fold into three-dimensional structures inside the cell.",
    "Redis keeps its data in memory and can persist it to disk.",
    "Apache Beam runs the same pipeline in batch or streaming mode.",
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "Vaccines train the immune system to recognise a pathogen.",
    "The stock market fell sharply after the announcement.",
    "Deep learning models need large amounts of labelled data.",
    "I love hiking in the mountains on a cool autumn morning, far from the noise of the city.",
]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[OnnxExport]]:
    """A fresh cache, filled by two threads exporting at once (one exports, one waits and reuses)."""
    cache = tmp_path_factory.mktemp("embedding-cache")
    config = EmbeddingConfig(backend="onnx", cache_dir=str(cache))
    results: list[OnnxExport] = []
    errors: list[BaseException] = []

    def export() -> None:
        try:
            results.append(ensure_onnx_export(config))
        except BaseException as exc:  # surfaced by the tests below
            errors.append(exc)

    threads = [threading.Thread(target=export) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return cache, results


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    config = EmbeddingConfig(backend="torch")
    return embed_texts(load_sentence_transformer(config), SENTENCES, config)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


class TestBackends:
    def test_torch_vectors_are_normalized_384_floats(self, torch_vectors: np.ndarray) -> None:
        assert torch_vectors.shape == (len(SENTENCES), 384)
        assert torch_vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(torch_vectors, axis=1), 1.0, atol=1e-5)
        # Sanity: the paraphrase pair is closer than an unrelated pair.
        assert torch_vectors[4] @ torch_vectors[5] > torch_vectors[4] @ torch_vectors[7] + 0.2

    @pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
    def test_backend_agrees_with_torch(self, backend: str, torch_vectors: np.ndarray,
                                       onnx_cache: tuple[Path, list[OnnxExport]]) -> None:
        config = EmbeddingConfig(backend=backend, cache_dir=str(onnx_cache[0]))  # type: ignore[arg-type]
        model = load_sentence_transformer(config)
        assert isinstance(model[0].model, OnnxTransformerModel)
        vectors = embed_texts(model, SENTENCES, config)
        assert vectors.shape == torch_vectors.shape
        cosines = _cosines(vectors, torch_vectors)
        assert cosines.min() > 0.99, cosines
        if backend == "onnx":  # the same fp32 graph: interchangeable with torch
            np.testing.assert_allclose(vectors, torch_vectors, atol=1e-4)
        else:  # int8 is close, but not equal: a separate backend family
            assert cosines.min() < 0.9999

    def test_batch_size_and_order_do_not_change_vectors(self, torch_vectors: np.ndarray) -> None:
        config = EmbeddingConfig(batch_size=3)
        vectors = embed_texts(load_sentence_transformer(config), SENTENCES[::-1], config)[::-1]
        np.testing.assert_allclose(vectors, torch_vectors, atol=1e-5)

    def test_threads_setting_reaches_onnx_runtime(self, onnx_cache: tuple[Path, list[OnnxExport]]) -> None:
        config = EmbeddingConfig(backend="onnx-int8", threads=1, cache_dir=str(onnx_cache[0]))
        model = load_sentence_transformer(config)
        onnx_model = model[0].model
        assert isinstance(onnx_model, OnnxTransformerModel)
        assert onnx_model.session.get_session_options().intra_op_num_threads == 1
        assert embed_texts(model, [], config).shape == (0, 384)

    def test_unknown_model_fails_fast_offline(self, tmp_path: Path) -> None:
        assert os.environ.get("HF_HUB_OFFLINE") == "1"
        for backend in ("torch", "onnx"):
            config = EmbeddingConfig(model="no-such-org/no-such-model", backend=backend,  # type: ignore[arg-type]
                                     cache_dir=str(tmp_path))
            with pytest.raises(ModelNotAvailableError, match="no-such-org/no-such-model"):
                load_sentence_transformer(config)


class TestOnnxExportCache:
    def test_concurrent_first_exports_write_once(self, onnx_cache: tuple[Path, list[OnnxExport]]) -> None:
        cache, results = onnx_cache
        assert sorted(result.exported for result in results) == [False, True]
        assert results[0].folder == results[1].folder
        folder = results[0].folder
        assert folder.parent == cache / "embeddings"
        assert folder.name.startswith("all-MiniLM-L6-v2-onnx-")
        assert [p.name for p in folder.parent.iterdir() if ".tmp-" in p.name] == []  # no staging left
        assert results[0].fp32.stat().st_size > 50_000_000  # fp32 weights
        assert results[0].int8.stat().st_size < results[0].fp32.stat().st_size * 0.8
        manifest = results[0].manifest()
        assert manifest["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
        assert manifest["max_abs_error"] < 1e-3
        assert manifest["int8"]["per_channel"] is True and manifest["int8"]["scheme"] == "int8-per-token"
        assert manifest["int8"]["matmuls"] == 35 and len(manifest["int8"]["kept_fp32"]) == 1

    def test_later_loads_reuse_the_export(self, onnx_cache: tuple[Path, list[OnnxExport]]) -> None:
        cache, results = onnx_cache
        folder = results[0].folder
        before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
        config = EmbeddingConfig(backend="onnx-int8", cache_dir=str(cache))
        again = ensure_onnx_export(config)
        assert again == OnnxExport(folder, exported=False)
        load_sentence_transformer(config)
        assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before
        assert sorted(p.name for p in (cache / "embeddings").iterdir() if p.is_dir()) == [folder.name]

    def test_cache_dir_from_environment(self, onnx_cache: tuple[Path, list[OnnxExport]],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        cache, results = onnx_cache
        monkeypatch.setenv("BEAM_RAG_CACHE_DIR", str(cache))
        assert ensure_onnx_export(EmbeddingConfig(backend="onnx")) == OnnxExport(results[0].folder, exported=False)


def _chunks() -> list[Chunk]:
    return [Chunk(content=Content(text=text), id=f"doc{i // 3}#{i % 3}", index=i % 3,
                  metadata={"doc_id": f"doc{i // 3}", "n": i, "tags": ["a", "b"]})
            for i, text in enumerate(SENTENCES)]


Expected = dict[str, tuple[Any, dict[str, Any], np.ndarray]]  # id -> (text, metadata, vector)


def _check_embedded(expected: Expected, min_cosine: float,
                    not_equal_to: dict[str, np.ndarray] | None = None):
    """Same ids, texts and metadata; 384 floats close to the expected vector (and, when
    ``not_equal_to`` is given, not all equal to those: proof another backend ran)."""
    def check(outputs: list[Chunk]) -> None:
        if sorted(chunk.id for chunk in outputs) != sorted(expected):
            raise BeamAssertException(f"ids changed: {sorted(c.id for c in outputs)}")
        seen: dict[str, list[float]] = {}
        for chunk in outputs:
            text, metadata, vector = expected[chunk.id]
            if not isinstance(chunk, Chunk) or chunk.content.text != text or chunk.metadata != metadata:
                raise BeamAssertException(f"chunk {chunk.id} changed: {chunk!r}")
            dense = chunk.embedding.dense_embedding if chunk.embedding else None
            if not isinstance(dense, list) or len(dense) != 384 or not all(isinstance(x, float) for x in dense):
                raise BeamAssertException(f"chunk {chunk.id}: no 384-d float list embedding")
            seen[chunk.id] = dense
            cosine = float(np.dot(dense, vector) / (np.linalg.norm(dense) * np.linalg.norm(vector)))
            if cosine < min_cosine:
                raise BeamAssertException(f"chunk {chunk.id}: cosine {cosine} to the in-process vector")
        if not_equal_to is not None and all(
                np.allclose(dense, not_equal_to[chunk_id], atol=1e-6) for chunk_id, dense in seen.items()):
            raise BeamAssertException("the vectors are exactly the torch backend's")
    return check


class TestEmbeddingTransform:
    # int8 activations have one scale per token, so the pipeline's batches (not the
    # in-process ones) give the same vectors for every backend.
    @pytest.mark.parametrize("backend, min_cosine", [("torch", 0.9999), ("onnx-int8", 0.9999)])
    def test_chunks_in_embedded_chunks_out(self, backend: str, min_cosine: float, torch_vectors: np.ndarray,
                                           onnx_cache: tuple[Path, list[OnnxExport]]) -> None:
        config = EmbeddingConfig(backend=backend, batch_size=4, cache_dir=str(onnx_cache[0]))  # type: ignore[arg-type]
        # The pipeline must give the same vectors as the in-process (query-side) path.
        reference = embed_texts(load_sentence_transformer(config), SENTENCES, config)
        expected = {c.id: (c.content.text, dict(c.metadata), reference[i]) for i, c in enumerate(_chunks())}
        torch_by_id = {c.id: torch_vectors[i] for i, c in enumerate(_chunks())}
        with beam.Pipeline(runner="DirectRunner") as pipeline:
            embedded = (pipeline | beam.Create(_chunks()) | "Embed" >> embedding_transform(config))
            assert_that(embedded, _check_embedded(expected, min_cosine,
                                                  torch_by_id if backend != "torch" else None))
        assert np.min(_cosines(reference, torch_vectors)) > 0.99

    def test_int8_vectors_do_not_depend_on_the_batch(self, onnx_cache: tuple[Path, list[OnnxExport]]) -> None:
        """One text alone, in a batch of ten, and next to a long text with large activations
        (which set the one scale of a per-batch quantization) gives the same vector."""
        config = EmbeddingConfig(backend="onnx-int8", cache_dir=str(onnx_cache[0]))
        model = load_sentence_transformer(config)
        together = embed_texts(model, SENTENCES, config)
        alone = np.vstack([embed_texts(model, [text], config) for text in SENTENCES])
        loud = "ZZZZ 999999 !!!! " * 40
        beside = np.vstack([embed_texts(model, [text, loud], config)[0] for text in SENTENCES])
        assert _cosines(together, alone).min() > 0.99999
        assert _cosines(beside, alone).min() > 0.99999

    def test_explicit_artifact_location_and_two_pipelines(self, tmp_path: Path) -> None:
        config = EmbeddingConfig(batch_size=8)
        reference = embed_texts(load_sentence_transformer(config), SENTENCES, config)
        expected = {c.id: (c.content.text, dict(c.metadata), reference[i]) for i, c in enumerate(_chunks())}
        shared = embedding_transform(config)  # reused: each pipeline gets fresh MLTransform artifacts
        steps = [embedding_transform(config, artifact_location=str(tmp_path / "artifacts")), shared, shared]
        for step in steps:
            with beam.Pipeline(runner="DirectRunner") as pipeline:
                assert_that(pipeline | beam.Create(_chunks()) | step, _check_embedded(expected, 0.9999))
        assert any((tmp_path / "artifacts").iterdir())
