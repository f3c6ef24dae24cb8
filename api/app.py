"""The FastAPI application: `uvicorn gisp_service.api.app:app` (OpenAPI docs at /docs).

`create_app(settings)` builds an app bound to one set of settings (tests build several);
migrations are applied at startup."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gisp_service.api import errors, openapi
from gisp_service.api.checkpoints.router import router as checkpoints_router
from gisp_service.api.datasets.router import router as datasets_router
from gisp_service.api.deps import ServiceContext
from gisp_service.api.jobs.router import router as jobs_router
from gisp_service.api.ops.metrics import make_registry
from gisp_service.api.ops.router import router as ops_router
from gisp_service.api.ui.router import router as ui_router
from gisp_service.api.webhooks.router import router as webhooks_router
from gisp_service.core.runtime import Runtime
from gisp_service.core.settings import Settings
from gisp_service.db.migrate import upgrade
from gisp_service.worker.app import make_celery

log = logging.getLogger("gisp.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    ctx = ServiceContext(Runtime.build(settings), make_celery(settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.db_url)
        if settings.auth == "off":
            log.warning("GISP_AUTH=off: every request acts as tenant 'default' without a key")
        yield
        ctx.rt.engine.dispose()

    app = FastAPI(
        title="gisp-service",
        version="0.1.0",
        description="Structured pruning jobs (GISP) and the nested checkpoints they produce. Sparsity is the "
        "fraction of attention+MLP parameters removed; embeddings, norms and the LM head are not counted.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.metrics = make_registry(ctx)
    errors.install(app)
    for router in (datasets_router, jobs_router, checkpoints_router, ops_router):
        app.include_router(router)
    app.include_router(webhooks_router)
    app.include_router(ui_router)
    openapi.install(app)
    return app


app = create_app()
