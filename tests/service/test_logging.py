"""JSON logs (issue 12, item 8): the worker's lines are JSON objects carrying the job, its tenant
and the worker that ran it."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.service


def test_worker_lines_are_json_with_the_job_bound(service, finished_job):
    from sqlalchemy import select

    from gisp_service.db.models import Tenant
    from gisp_service.db.session import read_session

    lines = []
    for raw in service.worker.log.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue  # Celery prints its banner to stdout, not through logging
    about_job = [line for line in lines if isinstance(line, dict) and line.get("job_id") == finished_job["id"]]
    assert about_job, "no JSON line carries the job's id"
    finished = [line for line in about_job if "succeeded in" in line["event"] and line["logger"] == "gisp.worker"]
    assert finished, about_job[-5:]
    with read_session(service.rt.read_sessions) as session:
        alice = session.scalar(select(Tenant.id).where(Tenant.name == "alice"))
    assert finished[0]["tenant_id"] == alice and ":" in finished[0]["worker_id"]
    assert {"timestamp", "level"} <= set(finished[0])
