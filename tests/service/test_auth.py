"""API keys and tenant isolation: no key → 401; another tenant's resources → 404, everywhere."""

from __future__ import annotations

import pytest

from tests.service.conftest import TINY, submit

pytestmark = pytest.mark.service


@pytest.mark.parametrize(
    "method, path",
    [("get", "/v1/datasets"), ("post", "/v1/jobs"), ("get", "/v1/jobs"), ("get", "/v1/checkpoints/ckpt_x")],
)
def test_requests_without_a_valid_key_get_401(service, method, path):
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic abc"}):
        response = getattr(service.client, method)(path, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["errors"][0]["field"] == "Authorization"


def test_another_tenant_sees_nothing(service, text_dataset, finished_job):
    checkpoints = service.client.get(f"/v1/jobs/{finished_job['id']}/checkpoints", headers=service.headers())
    checkpoint_id = checkpoints.json()["data"][0]["id"]
    bob = service.headers("bob")
    job_id, dataset_id = finished_job["id"], text_dataset["id"]
    for method, path in [
        ("get", f"/v1/datasets/{dataset_id}"),
        ("delete", f"/v1/datasets/{dataset_id}"),
        ("get", f"/v1/jobs/{job_id}"),
        ("post", f"/v1/jobs/{job_id}/cancel"),
        ("get", f"/v1/jobs/{job_id}/events"),
        ("get", f"/v1/jobs/{job_id}/checkpoints"),
        ("get", f"/v1/jobs/{job_id}/checkpoints/select?max_params=1000000000"),
        ("get", f"/v1/checkpoints/{checkpoint_id}"),
        ("get", f"/v1/checkpoints/{checkpoint_id}/download"),
    ]:
        response = getattr(service.client, method)(path, headers=bob)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert all(d["id"] != dataset_id for d in service.client.get("/v1/datasets", headers=bob).json()["data"])
    assert all(j["id"] != job_id for j in service.client.get("/v1/jobs", headers=bob).json()["data"])
    # bob cannot submit a job on alice's dataset either
    response = submit(service, {**TINY, "dataset_id": dataset_id}, tenant="bob")
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "dataset_id"
    # and alice still sees all of it
    assert service.client.get(f"/v1/datasets/{dataset_id}", headers=service.headers()).status_code == 200
