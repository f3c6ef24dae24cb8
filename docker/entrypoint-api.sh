#!/bin/sh
# API container: apply migrations once, then serve. Extra arguments go to uvicorn.
set -eu
gisp db upgrade
exec uvicorn gisp_service.api.app:app --host 0.0.0.0 --port "${PORT:-8000}" --proxy-headers \
    --workers "${WEB_CONCURRENCY:-2}" "$@"
