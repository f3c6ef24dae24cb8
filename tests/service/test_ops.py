"""Health, readiness (also when the broker is down) and Prometheus metrics."""

from __future__ import annotations

import time

import pytest

from tests.service.conftest import METRICS_TOKEN

pytestmark = pytest.mark.service


def test_healthz_and_readyz(service):
    assert service.client.get("/healthz").json() == {"status": "ok"}
    ready = service.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_readyz_is_503_when_the_broker_is_unreachable(service, tmp_path):
    from fastapi.testclient import TestClient

    from gisp_service.api.app import create_app

    settings = service.settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["errors"][0]["field"] == "broker"


def _scrape(service) -> dict[str, float]:
    values = {}
    scraped = service.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200, scraped.text
    for line in scraped.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _step_events(service) -> int:
    from sqlalchemy import func, select

    from gisp_service.db.models import JobEvent
    from gisp_service.db.session import read_session

    with read_session(service.rt.read_sessions) as session:
        return session.scalar(select(func.count()).where(JobEvent.type == "step"))


def test_metrics(service, finished_job):
    values = _scrape(service)
    assert values['gisp_jobs{status="succeeded"}'] >= 1
    assert values["gisp_step_duration_seconds_count"] >= 4
    assert values['gisp_step_duration_seconds_bucket{le="+Inf"}'] == values["gisp_step_duration_seconds_count"]
    assert values["gisp_queue_depth"] >= 0
    # the API's own HTTP metrics sit beside the collector
    assert any(name.startswith("http_requests_total{") and 'handler="/v1/jobs/{job_id}"' in name for name in values)


def test_step_histogram_counts_every_step_written(service, finished_job):
    """Kept as steps are written (a scrape no longer scans the events), it still counts them all."""
    for _ in range(50):  # a job of another test may be writing steps: compare at a quiet moment
        before = _step_events(service)
        count = _scrape(service)["gisp_step_duration_seconds_count"]
        if _step_events(service) == before:
            break
        time.sleep(0.2)
    assert count == before >= 4


def test_openapi_docs(service):
    assert service.client.get("/docs").status_code == 200
    paths = service.client.get("/openapi.json").json()["paths"]
    assert "/v1/jobs/{job_id}/checkpoints/select" in paths and "/v1/checkpoints/{checkpoint_id}/download" in paths


def test_migrations_match_the_models(service):
    """The Alembic head creates exactly the schema of db.models (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from gisp_service.db.models import Base

    with service.rt.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
