"""Health, readiness (also when the broker is down) and Prometheus metrics."""

from __future__ import annotations

import pytest

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


def test_metrics(service, finished_job):
    text = service.client.get("/metrics").text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values['gisp_jobs{status="succeeded"}'] >= 1
    assert values["gisp_step_duration_seconds_count"] >= 4
    assert values['gisp_step_duration_seconds_bucket{le="+Inf"}'] == values["gisp_step_duration_seconds_count"]
    assert values["gisp_queue_depth"] >= 0


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
