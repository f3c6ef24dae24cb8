"""Idempotency, pagination, cancellation (queued and running), dataset deletion while in use."""

from __future__ import annotations

import pytest

from tests.service.conftest import SLOW, TINY, seed_resume_state, submit, wait_finished, wait_for

pytestmark = pytest.mark.service


def test_idempotency_key(service, text_dataset):
    body = {**TINY, "dataset_id": text_dataset["id"], "seed": 7}
    first = submit(service, body, **{"Idempotency-Key": "same-key"})
    assert first.status_code == 201, first.text
    service.client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=service.headers())
    again = submit(service, body, **{"Idempotency-Key": "same-key"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = submit(service, {**body, "seed": 8}, **{"Idempotency-Key": "same-key"})
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    # another tenant may use the same key for its own job
    elsewhere = service.client.post(
        "/v1/datasets", files={"file": ("t.txt", b"once upon a time " * 400)}, headers=service.headers("bob")
    )
    bob_job = submit(
        service, {**body, "dataset_id": elsewhere.json()["id"]}, tenant="bob", **{"Idempotency-Key": "same-key"}
    )
    assert bob_job.status_code == 201 and bob_job.json()["id"] != first.json()["id"]
    service.client.post(f"/v1/jobs/{bob_job.json()['id']}/cancel", headers=service.headers("bob"))


def test_pagination_and_status_filter(service, text_dataset):
    ids = []
    for seed in range(5):
        job = submit(service, {**TINY, "dataset_id": text_dataset["id"], "seed": 100 + seed}).json()
        service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=service.headers())
        ids.append(job["id"])
    seen, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = service.client.get("/v1/jobs", params=params, headers=service.headers()).json()
        assert len(page["data"]) <= 2
        seen += [j["id"] for j in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))  # newest first, no repeats
    assert seen[:5] == ids[::-1]
    for job_id in ids:
        wait_finished(service, job_id)
    cancelled = service.client.get("/v1/jobs?status=cancelled&limit=100", headers=service.headers()).json()["data"]
    assert {j["id"] for j in cancelled} >= set(ids) and all(j["status"] == "cancelled" for j in cancelled)


def test_cancel_running_and_queued(service, text_dataset):
    # without the refit, checkpoints register as their targets are crossed, so this cancels between steps
    running = submit(service, {**SLOW, "dataset_id": text_dataset["id"], "reconstruct": "none"}).json()
    queued = submit(service, {**TINY, "dataset_id": text_dataset["id"], "seed": 3}).json()
    in_use = service.client.delete(f"/v1/datasets/{text_dataset['id']}", headers=service.headers())
    assert in_use.status_code == 409 and in_use.json()["errors"][0]["field"] == "dataset_id"
    response = service.client.post(f"/v1/jobs/{queued['id']}/cancel", headers=service.headers())
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    # running: cancel once the first target has been registered
    wait_for(service, running["id"], lambda j: j["status"] == "running" and j["checkpoint_count"] >= 1)
    kept_to_resume = seed_resume_state(service, running["id"])
    response = service.client.post(f"/v1/jobs/{running['id']}/cancel", headers=service.headers())
    assert response.status_code == 200 and response.json()["status"] in ("running", "cancelled")
    job = wait_finished(service, running["id"])
    assert job["status"] == "cancelled"
    assert 1 <= job["progress"]["step"] < job["progress"]["total_steps"]
    assert job["checkpoint_count"] >= 1
    assert not kept_to_resume.exists(), "a cancelled job is never resumed: its resumable state must go"
    assert service.rt.store.trajectory_path(running["id"]).is_file()  # the record of its checkpoints stays
    checkpoints = service.client.get(f"/v1/jobs/{running['id']}/checkpoints", headers=service.headers()).json()
    assert checkpoints["data"][0]["target_sparsity"] == 0.1
    events = service.client.get(f"/v1/jobs/{running['id']}/events", headers=service.headers()).json()["data"]
    assert events[-1]["type"] == "cancelled"
    again = service.client.post(f"/v1/jobs/{running['id']}/cancel", headers=service.headers())
    assert again.status_code == 409
    # the queued one never started
    queued_events = service.client.get(f"/v1/jobs/{queued['id']}/events", headers=service.headers()).json()["data"]
    assert [e["type"] for e in queued_events] == ["queued", "cancelled"]
    final = service.client.get(f"/v1/jobs/{queued['id']}", headers=service.headers()).json()
    assert final["status"] == "cancelled" and final["started_at"] is None and final["progress"]["step"] == 0
