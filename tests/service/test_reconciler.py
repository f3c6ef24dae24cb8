"""What the reconciler decides about a job whose worker is gone: a cancelled one is finished and
announced (`job.cancelled`, as the API's cancel does), one whose worker died on each of its last
GISP_MAX_ATTEMPTS starts with no step completed in between is failed with `worker_lost` (and
announced), any other (one that progressed between deaths, or died fewer times) is re-queued.

The dead worker is simulated: the rows are written as a worker that died would leave them (running,
an old heartbeat, its attempt count); the real-process version, a job that kills its worker at
every start, is tests/faults/test_poison.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.service.conftest import seed_resume_state

pytestmark = pytest.mark.service


def _orphan(service, finished_job: dict, starts: tuple[int, ...] = (0,), **state) -> str:
    """A copy of a finished job's row, left as workers that died mid-run would leave it: one
    `started` event per start, resumed from each of `starts`, and the state a dead `tyr` worker
    keeps to resume it (written before the row: the worker's own reconciler may act at once)."""
    from sqlalchemy import select

    from gisp_service.db.ids import new_id
    from gisp_service.db.models import Job, WebhookEndpoint, utcnow
    from gisp_service.db.repos import events as event_repo
    from gisp_service.db.repos import webhooks as webhook_repo
    from gisp_service.db.session import write_transaction

    job_id = new_id("job")
    seed_resume_state(service, job_id)
    with write_transaction(service.rt.sessions) as session:
        source = session.get(Job, finished_job["id"])
        columns = {c.key: getattr(source, c.key) for c in Job.__table__.columns}
        columns.update(
            id=job_id,
            status="running",
            lease="dead-lease",
            worker_id="gone:1",
            heartbeat_at=utcnow() - timedelta(hours=1),
            finished_at=None,
            idempotency_key=None,
            event_seq=0,
            attempts=len(starts),
            **state,
        )
        session.add(Job(**columns))
        session.flush()
        for attempt, step in enumerate(starts, 1):
            data = {"worker_id": "gone:1", "attempt": attempt, "resumed_from_step": step}
            event_repo.append(session, columns["id"], "started", data)
        if not session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == source.tenant_id)):
            webhook_repo.add(
                session,
                WebhookEndpoint(
                    id=new_id("whep"),
                    tenant_id=source.tenant_id,
                    url="https://hooks.example/in",
                    events=["job.cancelled", "job.failed", "job.succeeded"],
                    secret="whsec_" + "A" * 32,
                ),
            )
    return columns["id"]


def _state(service, job_id: str) -> tuple[dict, list[str], list[str]]:
    from sqlalchemy import select

    from gisp_service.db.models import JobEvent, WebhookDelivery
    from gisp_service.db.session import write_transaction

    job = service.client.get(f"/v1/jobs/{job_id}", headers=service.headers()).json()
    with write_transaction(service.rt.sessions) as session:
        events = list(session.scalars(select(JobEvent.type).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))
        hooks = [
            d.event_type
            for d in session.scalars(select(WebhookDelivery))
            if d.payload.get("data", {}).get("id") == job_id
        ]
    return job, events, hooks


def _reconcile(service) -> None:
    from gisp_service.worker.reconciler import reconcile

    reconcile(service.rt)  # the worker's own reconciler may get there first: the outcome is the same


def test_a_job_cancelled_while_its_worker_was_gone_is_announced(service, finished_job) -> None:
    job_id = _orphan(service, finished_job, cancel_requested=True)
    _reconcile(service)
    job, events, hooks = _state(service, job_id)
    assert job["status"] == "cancelled"
    assert not (service.rt.store.job_dir(job_id) / "tyr").exists()
    assert events == ["started", "cancelled"]
    assert hooks == ["job.cancelled"]


def test_a_job_whose_worker_died_at_every_start_fails_with_worker_lost(service, finished_job) -> None:
    cap = service.settings.max_attempts
    job_id = _orphan(service, finished_job, starts=(0, 2) + (3,) * cap)  # progressed, then stuck at step 4
    _reconcile(service)
    job, events, hooks = _state(service, job_id)
    assert job["status"] == "failed"
    assert not (service.rt.store.job_dir(job_id) / "tyr").exists()
    assert job["error"]["code"] == "worker_lost"
    assert f"lost {cap} times in a row during step 4" in job["error"]["message"]
    assert events == ["started"] * (cap + 2) + ["error"] and hooks == ["job.failed"]


@pytest.mark.parametrize("kind", ["progressing", "below-the-cap"])
def test_other_jobs_of_dead_workers_are_requeued(service, finished_job, kind: str) -> None:
    from gisp_service.db.models import Job
    from gisp_service.db.session import write_transaction

    cap = service.settings.max_attempts
    starts = tuple(range(0, 2 * cap + 2, 2)) if kind == "progressing" else (1,) * (cap - 1)
    job_id = _orphan(service, finished_job, starts=starts, cancel_requested=False)
    _reconcile(service)
    with write_transaction(service.rt.sessions) as session:
        row = session.get(Job, job_id)
        status, attempts = row.status, row.attempts
    # re-queued; the real worker may already have claimed it again
    assert status in ("queued", "running", "succeeded")
    assert attempts >= len(starts)
