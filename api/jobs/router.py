from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Header, Query, Response
from sqlalchemy.orm import Session

from gisp_service.api.deps import ServiceContext, current_tenant, get_ctx, get_session
from gisp_service.api.jobs import service
from gisp_service.api.jobs.schemas import EventPage, JobCreate, JobOut, JobPage, JobStatus
from gisp_service.api.schemas import PROBLEMS
from gisp_service.core.queue import enqueue
from gisp_service.db.repos import events as event_repo
from gisp_service.db.repos import jobs as job_repo
from gisp_service.db.session import transaction

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=PROBLEMS)
log = logging.getLogger("gisp.api")


@router.post("", status_code=201, response_model=JobOut)
def submit_job(
    body: JobCreate,
    response: Response,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
    ctx: ServiceContext = Depends(get_ctx),
    tenant: str = Depends(current_tenant),
):
    with transaction(ctx.rt.sessions) as session:
        job, created = service.create(session, tenant, body, idempotency_key, ctx.rt.settings.model_root_paths)
        result = service.out(session, job)
    if created:
        try:  # after the commit: a worker must find the row. A failed send is re-sent by the reconciler.
            enqueue(ctx.celery, ctx.rt.settings, job.id)
        except Exception:
            log.exception("could not enqueue job %s; the reconciler will re-send it", job.id)
    else:
        response.status_code = 200
    return result


@router.get("", response_model=JobPage)
def list_jobs(
    status: JobStatus | None = Query(None),
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="cursor: the last id of the previous page"),
    session: Session = Depends(get_session),
    tenant: str = Depends(current_tenant),
):
    rows, more = job_repo.page(session, tenant, status, limit, after)
    return {"data": service.out_many(session, rows), "has_more": more}


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, session: Session = Depends(get_session), tenant: str = Depends(current_tenant)):
    return service.out(session, service.get(session, tenant, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, ctx: ServiceContext = Depends(get_ctx), tenant: str = Depends(current_tenant)):
    with transaction(ctx.rt.sessions) as session:
        return service.out(session, service.cancel(session, tenant, job_id))


@router.get("/{job_id}/events", response_model=EventPage)
def job_events(
    job_id: str,
    after: int = Query(0, ge=0, description="return events with seq greater than this"),
    limit: int = Query(100, ge=1, le=1000),
    session: Session = Depends(get_session),
    tenant: str = Depends(current_tenant),
):
    job = service.get(session, tenant, job_id)
    rows, more = event_repo.page(session, job.id, after, limit)
    return {
        "data": [{"seq": e.seq, "type": e.type, "created_at": e.created_at, "data": e.data} for e in rows],
        "has_more": more,
    }
