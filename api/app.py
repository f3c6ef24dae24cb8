"""The FastAPI application: `uvicorn gisp_service.api.app:app` (OpenAPI docs at /docs).

`create_app(settings)` builds an app bound to one set of settings (tests build several). The
app never migrates the database: a deploy migrates once before starting it (compose's one-shot
`migrate` service, `gisp db upgrade`; `gisp serve` and the test fixtures upgrade first)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator

from gisp_service.api import errors, openapi
from gisp_service.api.admission import AdmissionLimit
from gisp_service.api.body_limit import BodyLimit
from gisp_service.api.checkpoints.router import router as checkpoints_router
from gisp_service.api.datasets.router import router as datasets_router
from gisp_service.api.datasets.schemas import DatasetUpload
from gisp_service.api.deps import ServiceContext
from gisp_service.api.jobs.router import router as jobs_router
from gisp_service.api.jobs.schemas import JobCreate
from gisp_service.api.limits import RateLimits
from gisp_service.api.methods import Options
from gisp_service.api.ops.metrics import make_registry
from gisp_service.api.ops.router import router as ops_router
from gisp_service.api.ops.staging import StagingReclaimer
from gisp_service.api.ui.router import router as ui_router
from gisp_service.api.webhooks.router import router as webhooks_router
from gisp_service.core.logging import configure_logging
from gisp_service.core.model_policy import ModelPolicy
from gisp_service.core.runtime import Runtime
from gisp_service.core.settings import Settings, get_settings

log = logging.getLogger("gisp.api")
# beyond GISP_API_CONCURRENCY: threads for what runs outside admission (dependency exits, file
# chunks of a download after its response started), connections for /readyz and /metrics
SPARE_THREADS = 8
SPARE_CONNECTIONS = 2
UPLOAD_PATHS = ("/v1/datasets", "/ui/datasets")  # the routes that read multipart bodies themselves


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    ctx = ServiceContext(
        Runtime.build(settings, pool_size=settings.api_concurrency + SPARE_CONNECTIONS),
        ModelPolicy.from_settings(settings),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        to_thread.current_default_thread_limiter().total_tokens = settings.api_concurrency + SPARE_THREADS
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.auth == "off":
            log.warning("GISP_AUTH=off: every request acts as tenant 'default' without a key")
        sweeper = asyncio.create_task(_app.state.staging.run())  # crashed uploads' files, at start and periodically
        yield
        sweeper.cancel()
        ctx.rt.close()

    app = FastAPI(
        title="gisp-service",
        version="0.1.0",
        description="Structured pruning jobs (GISP) and the checkpoints they produce (nested for every ranking method; "
        "see `nested` on the checkpoint list). Sparsity is the "
        "fraction of attention+MLP parameters removed; embeddings, norms and the LM head are not counted.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.limits = RateLimits(settings)
    app.state.metrics = make_registry(ctx)
    errors.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, upload_paths=UPLOAD_PATHS)
    app.add_middleware(Options)
    app.add_middleware(AdmissionLimit, limit=settings.api_concurrency, exempt=frozenset({"/healthz"}))
    # HTTP request metrics (rate, latency, status) beside the service's collector on /metrics; added
    # after admission, so it is the outer layer and its latency includes a request's wait there
    app.state.http_metrics = CollectorRegistry(auto_describe=True)
    Instrumentator(registry=app.state.http_metrics, excluded_handlers=["^/metrics$"]).instrument(app)
    app.state.staging = StagingReclaimer(ctx.rt.store, settings.staging_max_age, app.state.http_metrics)
    for router in (datasets_router, jobs_router, checkpoints_router, ops_router):
        app.include_router(router)
    app.include_router(webhooks_router)
    app.include_router(ui_router)
    openapi.install(app, exact=(JobCreate,), components=(DatasetUpload,))
    return app


_served: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    """`app`, what `uvicorn gisp_service.api.app:app` serves, made (with the process's logging set
    up) when first asked for, in each uvicorn process; importing this module for `create_app`
    (tests, scripts) builds nothing and leaves logging alone."""
    global _served
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _served is None:
        configure_logging(get_settings().log_level, get_settings().log_format)
        _served = create_app()
    return _served
