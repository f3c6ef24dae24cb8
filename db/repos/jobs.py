"""Jobs: creation, tenant-scoped reads, and the worker's state transitions. Transitions that
race (claim, requeue, progress) are single conditional UPDATEs, so two workers or a worker and
the reconciler can never both own a job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from gisp_service.db.models import Job, utcnow
from gisp_service.db.repos.base import TenantScoped

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")


def add(session: Session, job: Job) -> Job:
    session.add(job)
    session.flush()
    return job


_scoped = TenantScoped(Job)
get = _scoped.get
get_any = _scoped.get_any


def by_idempotency_key(session: Session, tenant_id: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))


def page(session: Session, tenant_id: str, status: str | None, limit: int, after: str | None) -> tuple[list[Job], bool]:
    return _scoped.page(session, tenant_id, limit, after, *([Job.status == status] if status else []))


def counts_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
    return {status: int(n) for status, n in rows}


def claim(session: Session, job_id: str, worker_id: str, lease: str, stale_before: datetime) -> bool:
    """Take a job to run: queued, or running with a heartbeat older than `stale_before` (its
    worker died). Not cancelled, not finished, not alive elsewhere."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.cancel_requested.is_(False),
            or_(Job.status == "queued", (Job.status == "running") & (Job.heartbeat_at < stale_before)),
        )
        .values(
            status="running",
            worker_id=worker_id,
            lease=lease,
            heartbeat_at=now,
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
        )
    )
    return result.rowcount == 1


def heartbeat(session: Session, job_id: str, lease: str, **progress: object) -> bool:
    """Refresh the heartbeat (and progress fields); False when this lease no longer owns the job."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease == lease, Job.status == "running")
        .values(heartbeat_at=utcnow(), **progress)
    )
    return result.rowcount == 1


def finish(
    session: Session,
    job_id: str,
    lease: str | None,
    status: str,
    error_code: str | None = None,
    error_message: str | None = None,
) -> bool:
    query = update(Job).where(Job.id == job_id, Job.status.not_in(FINISHED))
    if lease is not None:
        query = query.where(Job.lease == lease)
    result = session.execute(
        query.values(
            status=status, finished_at=utcnow(), eta_seconds=0.0, error_code=error_code, error_message=error_message
        )
    )
    return result.rowcount == 1


def fail_stale(session: Session, job_id: str, stale_before: datetime, code: str, message: str) -> bool:
    """Fail a running job whose heartbeat is still older than `stale_before` (its worker is gone)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.heartbeat_at < stale_before)
        .values(
            status="failed", finished_at=utcnow(), eta_seconds=0.0, error_code=code, error_message=message, lease=None
        )
    )
    return result.rowcount == 1


def request_cancel(session: Session, job: Job) -> None:
    """Queued jobs are cancelled at once; running ones when their worker reaches the next step."""
    job.cancel_requested = True
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
    session.flush()


def stale(session: Session, stale_before: datetime) -> list[Job]:
    return list(
        session.scalars(select(Job).where(Job.status.in_(("queued", "running")), Job.heartbeat_at < stale_before))
    )


def mark_requeued(session: Session, job_id: str, stale_before: datetime) -> bool:
    """Hand a stale job back to the queue; only one reconciler wins the conditional update."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(("queued", "running")), Job.heartbeat_at < stale_before)
        .values(status="queued", heartbeat_at=utcnow(), lease=None, worker_id=None)
    )
    return result.rowcount == 1


def release(session: Session, job_id: str, lease: str) -> bool:
    """A worker shutting down hands its job back to the queue (it resumes from its trajectory)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease == lease, Job.status == "running")
        .values(status="queued", heartbeat_at=utcnow(), lease=None, worker_id=None)
    )
    return result.rowcount == 1


def active_count(session: Session, tenant_id: str) -> int:
    """The tenant's queued and running jobs (what its quota counts)."""
    active = Job.status.in_(("queued", "running"))
    query = select(func.count()).select_from(Job).where(Job.tenant_id == tenant_id, active)
    return int(session.scalar(query) or 0)
