"""Rate limits per API key and quotas per tenant (issue 13): each refusal is a 429 problem+json
with Retry-After, on the embedded setup (buckets in the process) and on PostgreSQL + Redis
(buckets in Redis, shared by every API process: two apps here count against one bucket)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import TINY
from tests.service.test_validation import fields, problem

pytestmark = pytest.mark.service


def limited_app(service, **limits):
    from gisp_service.api.app import create_app

    return TestClient(create_app(service.settings.model_copy(update=limits)))


def test_submissions_past_the_rate_get_429_with_retry_after(service, text_dataset):
    headers = _fresh_key(service, f"carol-{service.backend.name}")  # a fresh key: its bucket is full
    bad = {**TINY, "dataset_id": "ds_missing"}  # refused at validation, so nothing is queued
    with limited_app(service, rate_jobs_per_minute=2) as first, limited_app(service, rate_jobs_per_minute=2) as second:
        assert first.post("/v1/jobs", json=bad, headers=headers).status_code == 422
        assert first.post("/v1/jobs", json=bad, headers=headers).status_code == 422
        refused = (second if service.backend.broker_url else first).post("/v1/jobs", json=bad, headers=headers)
        body = problem(refused, 429)
        assert 1 <= int(refused.headers["Retry-After"]) <= 60 and "GISP_RATE_JOBS_PER_MINUTE" in body["detail"]
        other = first.post("/v1/jobs", json=bad, headers=service.headers("bob"))  # another key has its own bucket
        assert other.status_code == 422


def test_uploads_past_the_rate_get_429_before_the_body_is_read(service):
    with limited_app(service, rate_uploads_per_minute=1) as client:
        first = client.post("/v1/datasets", files={"file": ("r.txt", b"hello there")}, headers=service.headers("bob"))
        assert first.status_code == 201, first.text
        again = client.post("/v1/datasets", files={"file": ("r.txt", b"hello again")}, headers=service.headers("bob"))
        assert problem(again, 429) and "Retry-After" in again.headers


def _fresh_key(service, tenant: str) -> dict[str, str]:
    from gisp_service.db.repos.tenants import create_key
    from gisp_service.db.session import write_transaction

    with write_transaction(service.rt.sessions) as session:
        return {"Authorization": f"Bearer {create_key(session, tenant)}"}


def test_the_tenant_quotas_of_active_jobs_and_stored_bytes(service):
    headers = _fresh_key(service, f"dave-{service.backend.name}")
    text = b"Once upon a time there was a little robot who liked to read. " * 40
    # a queue no worker reads: the jobs stay queued until cancelled here
    queue = f"{service.settings.queue}-quota"
    with limited_app(service, max_active_jobs=1, max_tenant_bytes=len(text) + 100, queue=queue) as client:
        dataset = client.post("/v1/datasets", files={"file": ("d.txt", text)}, headers=headers).json()
        more = client.post("/v1/datasets", files={"file": ("more.txt", b"x" * 200)}, headers=headers)
        body = problem(more, 429)
        assert "file" in fields(body) and "GISP_MAX_TENANT_BYTES" in body["detail"] and "Retry-After" in more.headers
        first = client.post("/v1/jobs", json={**TINY, "dataset_id": dataset["id"]}, headers=headers)
        assert first.status_code == 201, first.text
        second = client.post("/v1/jobs", json={**TINY, "dataset_id": dataset["id"], "seed": 1}, headers=headers)
        cancelled = client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=headers).json()
        assert cancelled["status"] == "cancelled"  # it was still queued when the second came
        body = problem(second, 429)
        assert "GISP_MAX_ACTIVE_JOBS" in body["detail"] and second.headers["Retry-After"] == "60"
        third = client.post("/v1/jobs", json={**TINY, "dataset_id": dataset["id"], "seed": 2}, headers=headers)
        assert third.status_code == 201  # the quota counts queued and running jobs only
        client.post(f"/v1/jobs/{third.json()['id']}/cancel", headers=headers)
    if service.backend.broker_url:
        import redis

        redis.Redis.from_url(service.backend.broker_url).delete(queue, f"_kombu.binding.{queue}")
