#!/usr/bin/env bash
# Build, run and schedule the knowledge-base rebuild as a Dataflow Flex Template.
#
#   deploy/dataflow/flex_template.sh image      build and push the image (launcher + workers)
#   deploy/dataflow/flex_template.sh build      write the template spec to Cloud Storage
#   deploy/dataflow/flex_template.sh run        launch one rebuild now
#   deploy/dataflow/flex_template.sh schedule   create a Cloud Scheduler job that launches it
#
# Settings (environment):
#   PROJECT, REGION, BUCKET       GCP project, Dataflow region, bucket for the spec and temp files
#   KB_INPUT                      e.g. gs://my-bucket/docs/*.jsonl
#   KB_INDEX                      default docs
#   KB_REDIS_URL                  redis:// URL the workers can reach, without credentials
#   KB_REDIS_PASSWORD_SECRET      projects/P/secrets/S/versions/V with the Redis password (read by each worker)
#   SCHEDULE                      cron for `schedule`, default "17 3 * * *" (UTC)
#   SCHEDULER_SA                  service account that Cloud Scheduler calls Dataflow as
#   TAG                           image tag, default 0.1.0
# Run from the repository root.
set -euo pipefail

: "${PROJECT:?}" "${REGION:?}" "${BUCKET:?}"
KB_INDEX=${KB_INDEX:-docs}
TAG=${TAG:-0.1.0}
IMAGE=${IMAGE:-$REGION-docker.pkg.dev/$PROJECT/beam-rag/beam-rag-dataflow:$TAG}
TEMPLATE=gs://$BUCKET/templates/beam-rag-rebuild.json
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PROJECT REGION BUCKET KB_INDEX IMAGE

case "${1:-}" in
  image)
    # One image for the Flex Template launcher and the workers (Dockerfile target "dataflow").
    gcloud auth configure-docker "$REGION-docker.pkg.dev" --quiet
    docker build --target dataflow -t "$IMAGE" .
    docker push "$IMAGE"
    ;;
  build)
    gcloud dataflow flex-template build "$TEMPLATE" \
      --image "$IMAGE" \
      --sdk-language PYTHON \
      --metadata-file "$HERE/metadata.json"
    ;;
  run)
    : "${KB_INPUT:?}" "${KB_REDIS_URL:?}" "${KB_REDIS_PASSWORD_SECRET:?}"
    # ^|^ makes | the separator, so values may contain commas.
    gcloud dataflow flex-template run "beam-rag-rebuild-$KB_INDEX-$(date -u +%Y%m%d-%H%M%S)" \
      --project "$PROJECT" \
      --region "$REGION" \
      --template-file-gcs-location "$TEMPLATE" \
      --temp-location "gs://$BUCKET/dataflow/tmp" \
      --staging-location "gs://$BUCKET/dataflow/staging" \
      --worker-machine-type n1-standard-4 \
      --max-workers 8 \
      --additional-experiments no_use_multiple_sdk_containers \
      --parameters "^|^input=$KB_INPUT|index=$KB_INDEX|mode=rebuild|redis_url=$KB_REDIS_URL|redis_password_secret=$KB_REDIS_PASSWORD_SECRET|sdk_container_image=$IMAGE|number_of_worker_harness_threads=4"
    ;;
  schedule)
    : "${KB_INPUT:?}" "${KB_REDIS_URL:?}" "${KB_REDIS_PASSWORD_SECRET:?}" "${SCHEDULER_SA:?}"
    export KB_INPUT KB_REDIS_URL KB_REDIS_PASSWORD_SECRET
    body=$(mktemp)
    trap 'rm -f "$body"' EXIT
    envsubst < "$HERE/launch-body.json" > "$body"
    # A fixed job name: Dataflow will not start a job whose name is already active,
    # so a rebuild that overruns its slot is not started twice.
    gcloud scheduler jobs create http "beam-rag-rebuild-$KB_INDEX" \
      --project "$PROJECT" \
      --location "$REGION" \
      --schedule "${SCHEDULE:-17 3 * * *}" \
      --time-zone Etc/UTC \
      --uri "https://dataflow.googleapis.com/v1b3/projects/$PROJECT/locations/$REGION/flexTemplates:launch" \
      --http-method POST \
      --headers Content-Type=application/json \
      --oauth-service-account-email "$SCHEDULER_SA" \
      --oauth-token-scope https://www.googleapis.com/auth/cloud-platform \
      --message-body-from-file "$body"
    ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
