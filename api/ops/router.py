from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gisp_service.api.deps import ServiceContext, get_ctx
from gisp_service.api.errors import problem_response, problems
from gisp_service.api.openapi import operation_id
from gisp_service.worker.app import queue_depth

router = APIRouter(tags=["operations"], generate_unique_id_function=operation_id)


@router.get("/healthz", name="healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", name="readyz", responses=problems(503))
def readyz(ctx: ServiceContext = Depends(get_ctx)):
    problems = []
    try:
        with ctx.rt.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
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
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
