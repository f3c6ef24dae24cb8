#!/bin/sh
# API container: serve. Migrations are not run here (every replica would run them): compose's
# one-shot `migrate` service runs `gisp db upgrade` once per deploy, before this starts. Logging
# (JSON lines) is set up by the app in each uvicorn process. Extra arguments go to uvicorn.
set -eu
exec uvicorn gisp_service.api.app:app --host 0.0.0.0 --port "${PORT:-8000}" --proxy-headers \
    --workers "${WEB_CONCURRENCY:-2}" "$@"
