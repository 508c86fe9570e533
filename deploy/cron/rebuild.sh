#!/bin/sh
# One scheduled knowledge-base rebuild, never two at once.
#
#   deploy/cron/rebuild.sh [extra beam-rag ingest flags]
#
# Settings come from the environment, or from $BEAM_RAG_ENV_FILE
# (default /etc/beam-rag/rebuild.env, mode 600: it may hold REDIS_URL / REDIS_PASSWORD):
#   KB_INPUT          files to index, a path or glob (local or gs://)   required
#   KB_INDEX          knowledge-base name                               default: docs
#   BEAM_RAG          the beam-rag executable                          default: beam-rag on PATH
#   REBUILD_TIMEOUT   seconds before a run is stopped                   default: 7200
#   BEAM_RAG_LOCK     lock file            default: $XDG_RUNTIME_DIR, else ~/.beam-rag, /beam-rag-rebuild-$KB_INDEX.lock
#                     (never a predictable path in world-writable /tmp, where another user could hold it)
#
# While a run holds the lock, a new one logs that it skipped and exits 0, so a slow
# rebuild never overlaps the next one. The lock is not passed on to beam-rag (flock -o),
# so nothing it starts (the embedded Redis, say) can keep holding it after the run.
set -eu

env_file=${BEAM_RAG_ENV_FILE:-/etc/beam-rag/rebuild.env}
if [ -r "$env_file" ]; then
    set -a
    # shellcheck disable=SC1090
    . "$env_file"
    set +a
fi

: "${KB_INPUT:?set KB_INPUT to the files to index, e.g. '/srv/docs/*.jsonl'}"
index=${KB_INDEX:-docs}
beam_rag=${BEAM_RAG:-beam-rag}
if [ -z "${BEAM_RAG_LOCK:-}" ]; then
    lock_dir=${XDG_RUNTIME_DIR:-${BEAM_RAG_HOME:-$HOME/.beam-rag}}  # the user's own folder
    mkdir -p -m 0700 "$lock_dir"
fi
lock=${BEAM_RAG_LOCK:-$lock_dir/beam-rag-rebuild-$index.lock}
busy=75  # EX_TEMPFAIL: only flock returns it here

stamp() { date -u +%Y-%m-%dT%H:%M:%SZ; }
echo "$(stamp) rebuild of $index from $KB_INPUT: starting"
set +e
flock --nonblock --close --conflict-exit-code "$busy" "$lock" \
    timeout --kill-after=60 "${REBUILD_TIMEOUT:-7200}" \
    "$beam_rag" ingest --input "$KB_INPUT" --index "$index" --mode rebuild "$@"
status=$?
set -e
if [ "$status" -eq "$busy" ]; then
    echo "$(stamp) rebuild of $index: skipped, the previous run still holds $lock"
    exit 0
fi
echo "$(stamp) rebuild of $index: exit $status"
exit "$status"
