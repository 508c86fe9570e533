"""Airflow DAGs that rebuild a beam-rag knowledge base on a schedule.

Needs ``apache-airflow-providers-apache-beam`` (and ``-google`` for the Dataflow DAG)
in Airflow, and beam-rag installed in its own virtualenv on the workers
(``BEAM_RAG_PYTHON``): Airflow and Beam pin different versions of the same libraries, so
the pipeline runs in its own interpreter, not Airflow's.

Two DAGs:

- ``beam_rag_rebuild``: the DirectRunner on the Airflow worker, for corpora that fit one
  machine (thousands of documents).
- ``beam_rag_rebuild_dataflow``: the same pipeline on Dataflow, with the workers running
  the beam-rag image (``docker build --target dataflow``), so they have rag_core and the
  models without installing anything at start-up. Paused when created.

Redis credentials never appear in a DAG, a flag or a task log: the pipeline reads
``REDIS_URL`` (and ``REDIS_PASSWORD``) from the Airflow worker's environment (from your
secrets backend). On Dataflow they reach the workers inside the job's serialized
pipeline, so keep the job's temp/staging buckets private.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.4+
    from airflow import DAG

BEAM_RAG_HOME = os.environ.get("BEAM_RAG_REPO", "/opt/beam-rag")
BEAM_RAG_PYTHON = os.environ.get("BEAM_RAG_PYTHON", f"{BEAM_RAG_HOME}/.venv/bin/python")
INGEST_PY = f"{BEAM_RAG_HOME}/pipelines/ingest.py"

KB_INPUT = os.environ.get("BEAM_RAG_KB_INPUT", "gs://my-bucket/docs/*.jsonl")
KB_INDEX = os.environ.get("BEAM_RAG_KB_INDEX", "docs")

GCP_PROJECT = os.environ.get("BEAM_RAG_GCP_PROJECT", "my-project")
GCP_REGION = os.environ.get("BEAM_RAG_GCP_REGION", "us-central1")
GCS_TEMP = os.environ.get("BEAM_RAG_GCS_TEMP", "gs://my-bucket/dataflow/tmp")
WORKER_IMAGE = os.environ.get(
    "BEAM_RAG_WORKER_IMAGE", f"{GCP_REGION}-docker.pkg.dev/{GCP_PROJECT}/beam-rag/beam-rag-dataflow:0.1.0"
)

# The flags of `beam-rag ingest` (pipelines/ingest.py); each key becomes --key=value.
INGEST_OPTIONS = {
    "input": KB_INPUT,
    "index": KB_INDEX,
    "mode": "rebuild",
    "keep-versions": "1",
    "max-shrink": "0.5",
}

default_args = {
    "owner": "beam-rag",
    "retries": 1,
    "retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=2),
}

with DAG(
    dag_id="beam_rag_rebuild",
    description="Rebuild the beam-rag knowledge base (DirectRunner)",
    schedule="17 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # a slow rebuild delays the next one instead of overlapping it
    default_args=default_args,
    tags=["beam-rag"],
):
    BeamRunPythonPipelineOperator(
        task_id="ingest",
        runner="DirectRunner",
        py_file=INGEST_PY,
        py_interpreter=BEAM_RAG_PYTHON,
        pipeline_options=dict(INGEST_OPTIONS),
    )

with DAG(
    dag_id="beam_rag_rebuild_dataflow",
    description="Rebuild the beam-rag knowledge base on Dataflow",
    schedule="17 3 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    default_args=default_args,
    tags=["beam-rag", "dataflow"],
):
    BeamRunPythonPipelineOperator(
        task_id="ingest_on_dataflow",
        runner="DataflowRunner",
        py_file=INGEST_PY,
        py_interpreter=BEAM_RAG_PYTHON,
        default_pipeline_options={
            "project": GCP_PROJECT,
            "region": GCP_REGION,
            "temp_location": GCS_TEMP,
        },
        pipeline_options=dict(
            INGEST_OPTIONS,
            # Workers run the beam-rag image: rag_core, the embedding model and Beam's boot.
            sdk_container_image=WORKER_IMAGE,
            machine_type="n1-standard-4",
            max_num_workers="8",
            # One SDK process per worker VM, with threads: one copy of each model per VM.
            experiments="no_use_multiple_sdk_containers",
            number_of_worker_harness_threads="4",
        ),
        dataflow_config=DataflowConfiguration(
            job_name="beam-rag-rebuild-{{ ds_nodash }}",
            project_id=GCP_PROJECT,
            location=GCP_REGION,
            wait_until_finished=True,
        ),
    )
