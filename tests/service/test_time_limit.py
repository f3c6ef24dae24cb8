"""GISP_JOB_TIME_LIMIT: a job past its wall time fails with `time_limit` and says so, wherever it
is (here, before its data is even read), instead of holding its worker, and like every job that
ends drops what it kept to resume (`tyr/`). The worker code runs in
this process (`run_job` on a runtime whose limit is tiny) on a job the test queues itself, so the
session's worker never sees it."""

from __future__ import annotations

import pytest

from tests.service.conftest import seed_resume_state

pytestmark = pytest.mark.service


def test_a_job_over_its_time_limit_fails_with_time_limit(service, finished_job) -> None:
    from gisp_service.core.runtime import Runtime
    from gisp_service.db.ids import new_id
    from gisp_service.db.models import Job, utcnow
    from gisp_service.db.session import write_transaction
    from gisp_service.worker.runner import run_job

    with write_transaction(service.rt.sessions) as session:
        source = session.get(Job, finished_job["id"])
        columns = {c.key: getattr(source, c.key) for c in Job.__table__.columns}
        job_id = new_id("job")
        columns.update(id=job_id, status="queued", heartbeat_at=utcnow(), finished_at=None, started_at=None)
        columns.update(idempotency_key=None, event_seq=0, attempts=0, lease=None, worker_id=None)
        session.add(Job(**columns))
    kept_to_resume = seed_resume_state(service, job_id)
    rt = Runtime.build(service.settings.model_copy(update={"job_time_limit": 1e-6}))
    try:
        assert run_job(job_id, "test:1", rt) == "failed"
    finally:
        rt.close()
    assert not kept_to_resume.exists(), "a job its worker failed is never resumed: its resumable state must go"
    job = service.client.get(f"/v1/jobs/{job_id}", headers=service.headers()).json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "time_limit"
    assert "GISP_JOB_TIME_LIMIT" in job["error"]["message"]
    events = service.client.get(f"/v1/jobs/{job_id}/events", headers=service.headers()).json()["data"]
    assert [e["type"] for e in events] == ["started", "error"]
