"""What the reconciler decides about a job whose worker is gone: a cancelled one is finished and
announced (`job.cancelled`, as the API's cancel does), one whose worker died on each of its
GISP_MAX_ATTEMPTS starts is failed with `worker_lost` (and announced), any other is re-queued.

The dead worker is simulated: the rows are written as a worker that died would leave them (running,
an old heartbeat, its attempt count); the real-process version, a job that kills its worker at
every start, is tests/faults/test_poison.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytestmark = pytest.mark.service


def _orphan(service, finished_job: dict, **state) -> str:
    """A copy of a finished job's row, left as a worker that died mid-run would leave it."""
    from sqlalchemy import select

    from gisp_service.db.ids import new_id
    from gisp_service.db.models import Job, WebhookEndpoint, utcnow
    from gisp_service.db.repos import webhooks as webhook_repo
    from gisp_service.db.session import write_transaction

    with write_transaction(service.rt.sessions) as session:
        source = session.get(Job, finished_job["id"])
        columns = {c.key: getattr(source, c.key) for c in Job.__table__.columns}
        columns.update(
            id=new_id("job"),
            status="running",
            lease="dead-lease",
            worker_id="gone:1",
            heartbeat_at=utcnow() - timedelta(hours=1),
            finished_at=None,
            idempotency_key=None,
            event_seq=0,
            **state,
        )
        session.add(Job(**columns))
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
    job_id = _orphan(service, finished_job, cancel_requested=True, attempts=1)
    _reconcile(service)
    job, events, hooks = _state(service, job_id)
    assert job["status"] == "cancelled"
    assert events == ["cancelled"]
    assert hooks == ["job.cancelled"]


def test_a_job_whose_worker_died_at_every_start_fails_with_worker_lost(service, finished_job) -> None:
    job_id = _orphan(service, finished_job, attempts=service.settings.max_attempts)
    _reconcile(service)
    job, events, hooks = _state(service, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "worker_lost"
    assert f"lost {service.settings.max_attempts} times" in job["error"]["message"]
    assert events == ["error"] and hooks == ["job.failed"]


def test_a_job_below_the_attempt_cap_is_requeued(service, finished_job) -> None:
    from gisp_service.db.models import Job
    from gisp_service.db.session import write_transaction

    job_id = _orphan(service, finished_job, attempts=service.settings.max_attempts - 1, cancel_requested=False)
    _reconcile(service)
    with write_transaction(service.rt.sessions) as session:
        row = session.get(Job, job_id)
        status, attempts = row.status, row.attempts
    # re-queued; the real worker may already have claimed it again (its last allowed start)
    assert status in ("queued", "running", "succeeded")
    assert attempts <= service.settings.max_attempts
