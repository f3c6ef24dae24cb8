"""Job routes: thin, they call `api.jobs.service` only (and the broker after the commit)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from gisp_service.api.deps import AppContext, ReadSession, TenantId
from gisp_service.api.errors import problems
from gisp_service.api.jobs import service, stream
from gisp_service.api.jobs.schemas import EventOut, JobCreate, JobOut, JobStatus
from gisp_service.api.jobs.stream import EVENT_STREAM
from gisp_service.api.limits import SubmitRate
from gisp_service.api.openapi import operation_id
from gisp_service.api.schemas import SEQ_MAX, Page, PageAfter, PageLimit
from gisp_service.core.queue import enqueue
from gisp_service.db.session import write_transaction

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problems(401), generate_unique_id_function=operation_id)
log = logging.getLogger("gisp.api")


@router.post(
    "",
    name="submit",
    status_code=201,
    response_model=JobOut,
    responses={200: {"model": JobOut, "description": "the job an earlier request made with this Idempotency-Key"}}
    | problems(413, 415, 422, 429),
)
def submit_job(
    body: JobCreate,
    response: Response,
    ctx: AppContext,
    tenant: TenantId,
    _rate: SubmitRate,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", max_length=200, description="the same key and body return the same job"),
    ] = None,
):
    """Validate everything (settings, model, datasets) before anything is queued, then enqueue."""
    with write_transaction(ctx.rt.sessions) as session:
        job, created = service.create(session, tenant, body, idempotency_key, ctx.models, ctx.rt.settings)
        result = service.out(session, job)
    if created:
        try:  # after the commit: a worker must find the row. A failed send is re-sent by the reconciler.
            enqueue(ctx.celery, ctx.rt.settings, job.id)
        except Exception:
            log.exception("could not enqueue job %s; the reconciler will re-send it", job.id)
    else:
        response.status_code = 200
    return result


@router.get("", name="list", response_model=Page[JobOut], responses=problems(422))
def list_jobs(
    session: ReadSession,
    tenant: TenantId,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: PageLimit = 20,
    after: PageAfter = None,
):
    return service.page(session, tenant, status, limit, after)


@router.get("/{job_id}", name="get", response_model=JobOut, responses=problems(404))
def get_job(job_id: str, session: ReadSession, tenant: TenantId):
    return service.out(session, service.get(session, tenant, job_id))


@router.post("/{job_id}/cancel", name="cancel", response_model=JobOut, responses=problems(404, 409))
def cancel_job(job_id: str, ctx: AppContext, tenant: TenantId):
    """A queued job is cancelled at once; a running one stops before its next step."""
    with write_transaction(ctx.rt.sessions) as session:
        return service.out(session, service.cancel(session, tenant, job_id, ctx.rt.settings))


EVENTS_RESPONSES = {
    200: {
        "description": "the job's events: a page as JSON, or with `Accept: text/event-stream` a Server-Sent Events "
        "stream (`id` is the event's seq, `event` its type, `data` the event as JSON; comment lines are heartbeats; "
        "the stream ends after the job's last event)",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/EventPage"}},
            EVENT_STREAM: {"schema": {"type": "string"}},
        },
    }
}


@router.get(
    "/{job_id}/events",
    name="events",
    response_model=Page[EventOut],
    responses=EVENTS_RESPONSES | problems(404, 422),
)
def job_events(
    request: Request,
    job_id: str,
    ctx: AppContext,
    tenant: TenantId,
    after: Annotated[int, Query(ge=0, le=SEQ_MAX, description="return events with seq greater than this")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size (JSON only)")] = 100,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID", max_length=20, description="resume a stream after this seq (EventSource sends it)"
        ),
    ] = None,
):
    """The job's log, oldest first; `seq` is 1, 2, 3… per job. Ask for `text/event-stream` to
    follow it live (Server-Sent Events, resumable with Last-Event-ID)."""
    with ctx.rt.sessions() as session:  # its own short read: a stream must not hold the request's session
        page = service.events(session, tenant, job_id, after, limit)
    if stream.wants_stream(request.headers.get("accept")):
        return stream.event_response(ctx.rt, job_id, stream.resume_point(after, last_event_id))
    return page
