from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gisp_service.api.deps import AppContext
from gisp_service.api.errors import ApiProblem, problem_response, problems
from gisp_service.api.openapi import operation_id
from gisp_service.core.queue import queue_depth
from gisp_service.db.session import read_session

router = APIRouter(tags=["operations"], generate_unique_id_function=operation_id)


@router.get("/healthz", name="healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answered on the event loop, never waiting for a thread or the database (/readyz does)."""
    return {"status": "ok"}


@router.get("/readyz", name="readyz", responses=problems(503))
def readyz(ctx: AppContext):
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


metrics_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="metricsToken",
    description="The operator's token for /metrics (GISP_METRICS_TOKEN), sent as `Authorization: Bearer <token>`.",
)


def operator(ctx: AppContext, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(metrics_bearer)]):
    """/metrics shows every tenant's job counts: it takes the operator's token, and is open only
    when no token is set and auth is off (a single-user embedded setup)."""
    token = ctx.rt.settings.metrics_token
    sent = credentials.credentials if credentials is not None else ""
    if token and hmac.compare_digest(sent.encode(), token.encode()):
        return
    if not token and ctx.rt.settings.auth == "off":
        return
    detail = "send the operator's token: Authorization: Bearer <GISP_METRICS_TOKEN>"
    if not token:
        detail = "metrics are closed: the operator sets GISP_METRICS_TOKEN and scrapes with it"
    raise ApiProblem(401, detail, "Authorization", headers={"WWW-Authenticate": 'Bearer realm="gisp-metrics"'})


@router.get(
    "/metrics",
    name="metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}}
    | problems(401),
    dependencies=[Depends(operator)],
)
def metrics(request: Request) -> Response:
    """The service's collector (jobs, step durations, queue depth; from the database and broker,
    right for every process) and this API process's HTTP request metrics; for the operator's
    token (GISP_METRICS_TOKEN)."""
    body = generate_latest(request.app.state.metrics) + generate_latest(request.app.state.http_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
