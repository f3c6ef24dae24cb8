#!/bin/sh
# GPU worker container: one job at a time per GPU (concurrency 1, prefetch 1 from the app's
# config), each job in a fresh child process so its GPU memory is returned when it ends.
# The node name matches the HEALTHCHECK's `inspect ping -d celery@$HOSTNAME`.
set -eu
exec celery -A gisp_service.worker.app worker \
    --hostname "celery@${HOSTNAME}" \
    --queues "${GISP_QUEUE:-prune}" \
    --pool prefork --concurrency 1 --prefetch-multiplier 1 --max-tasks-per-child 1 \
    --loglevel "${CELERY_LOG_LEVEL:-INFO}" "$@"
