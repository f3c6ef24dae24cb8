from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gisp_service.api.deps import ServiceContext, get_ctx
from gisp_service.api.errors import problem_response, problems
from gisp_service.api.openapi import operation_id
from gisp_service.core.queue import queue_depth
from gisp_service.db.session import read_session

router = APIRouter(tags=["operations"], generate_unique_id_function=operation_id)


@router.get("/healthz", name="healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answered on the event loop, never waiting for a thread or the database (/readyz does)."""
    return {"status": "ok"}


@router.get("/readyz", name="readyz", responses=problems(503))
def readyz(ctx: ServiceContext = Depends(get_ctx)):
    problems = []
    try:
        with read_session(ctx.rt.read_sessions) as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        problems.append({"field": "database", "message": str(exc).splitlines()[0]})
    try:
        queue_depth(ctx.celery, ctx.rt.settings.queue)
    except Exception as exc:
        problems.append({"field": "broker", "message": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
    if problems:
        return problem_response(503, "not ready: " + ", ".join(p["field"] for p in problems), problems)
    return {"status": "ready", "database": "ok", "broker": "ok"}


@router.get(
    "/metrics",
    name="metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
def metrics(request: Request) -> Response:
    """The service's collector (jobs, step durations, queue depth; from the database and broker,
    right for every process) and this API process's HTTP request metrics."""
    body = generate_latest(request.app.state.metrics) + generate_latest(request.app.state.http_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
