"""Job events: an append-only log per job, numbered 1, 2, 3… by an atomic counter on the job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from gisp_service.db.models import Job, JobEvent

TYPES = ("queued", "started", "step", "checkpoint", "finished", "error", "cancelled")


def append(
    session: Session, job_id: str, type_: str, data: dict[str, Any] | None = None, duration: float | None = None
) -> int:
    seq = session.execute(
        update(Job).where(Job.id == job_id).values(event_seq=Job.event_seq + 1).returning(Job.event_seq)
    ).scalar_one()
    session.add(JobEvent(job_id=job_id, seq=seq, type=type_, data=data or {}, duration_seconds=duration))
    session.flush()
    return seq


def page(session: Session, job_id: str, after: int, limit: int) -> tuple[list[JobEvent], bool]:
    rows = list(
        session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.seq > after)
            .order_by(JobEvent.seq)
            .limit(limit + 1)
        )
    )
    return rows[:limit], len(rows) > limit


def step_duration_buckets(session: Session, bounds: list[float]) -> tuple[list[int], int, float]:
    """Cumulative counts of step durations <= each bound, the total count and the sum (one scan)."""
    columns = [func.sum(case((JobEvent.duration_seconds <= b, 1), else_=0)) for b in bounds]
    row = session.execute(
        select(*columns, func.count(), func.coalesce(func.sum(JobEvent.duration_seconds), 0.0)).where(
            JobEvent.type == "step", JobEvent.duration_seconds.is_not(None)
        )
    ).one()
    return [int(v or 0) for v in row[: len(bounds)]], int(row[-2]), float(row[-1])
