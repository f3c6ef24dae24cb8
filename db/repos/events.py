"""Job events: an append-only log per job, numbered 1, 2, 3… by an atomic counter on the job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gisp_service.db.models import Job, JobEvent, StepDurationBucket

TYPES = ("queued", "started", "step", "search", "checkpoint", "finished", "error", "cancelled")
# upper bounds (seconds) of the step-duration histogram; a new bound starts counting when added
STEP_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]


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


def starts_without_progress(session: Session, job_id: str) -> tuple[int, int]:
    """(n, step): the job's last n starts all resumed from `step`, i.e. none of them completed a
    step before the next start (progress only grows, so equal resume points are consecutive)."""
    resumed = [
        int(data.get("resumed_from_step", 0))
        for data in session.scalars(
            select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == "started").order_by(JobEvent.seq)
        )
    ]
    if not resumed:
        return 0, 0
    count = len(resumed) - next((i + 1 for i in range(len(resumed) - 1, -1, -1) if resumed[i] != resumed[-1]), 0)
    return count, resumed[-1]


def count_step_duration(session: Session, seconds: float) -> None:
    """Add one step to the duration histogram (in the transaction that writes the step)."""
    le = next((str(b) for b in STEP_BUCKETS if seconds <= b), "+Inf")
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(StepDurationBucket).values(le=le, count=1, seconds=seconds)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[StepDurationBucket.le],
            set_={"count": StepDurationBucket.count + 1, "seconds": StepDurationBucket.seconds + seconds},
        )
    )


def step_duration_buckets(session: Session, bounds: list[float] = STEP_BUCKETS) -> tuple[list[int], int, float]:
    """Cumulative counts of step durations <= each bound, the total count and the sum, from the
    histogram's rows (a dozen, however many steps were ever written)."""
    rows = {le: (count, total) for le, count, total in session.execute(select(StepDurationBucket.__table__))}
    cumulative, running = [], 0
    for bound in bounds:
        running += rows.get(str(bound), (0, 0.0))[0]
        cumulative.append(running)
    count = running + rows.get("+Inf", (0, 0.0))[0]
    return cumulative, count, float(sum(total for _, total in rows.values()))
