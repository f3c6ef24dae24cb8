"""What the worker records besides success: metrics from an evaluation dataset, an engine error
(the worker keeps serving), and a graceful shutdown that hands the job back to the queue."""

from __future__ import annotations

import json

import pytest

from tests.service.conftest import SLOW, TINY, submit, wait_finished, wait_for

pytestmark = pytest.mark.service


def _choice_dataset(service) -> dict:
    items = [
        {"question": "Once upon a time there was a little", "choices": ["girl", "purple"], "answer": 0},
        {"question": "She liked to play with her", "choices": ["dog", "the"], "answer": 0},
        {"question": "The sun was", "choices": ["quickly", "shining"], "answer": 1},
        {"question": "Tom went to the", "choices": ["park", "happy"], "answer": 0},
        {"question": "They were very", "choices": ["happy", "tree"], "answer": 0},
        {"question": "Lily saw a big", "choices": ["ran", "dog"], "answer": 1},
    ]
    payload = "\n".join(json.dumps(i) for i in items).encode()
    response = service.client.post("/v1/datasets", files={"file": ("mc.jsonl", payload)}, headers=service.headers())
    assert response.status_code == 201, response.text
    return response.json()


def test_metrics_come_from_the_eval_dataset(service, text_dataset):
    evaluation = _choice_dataset(service)
    job = submit(service, {**TINY, "dataset_id": text_dataset["id"], "eval_dataset_id": evaluation["id"]}).json()
    assert job["eval_dataset_id"] == evaluation["id"]
    assert wait_finished(service, job["id"])["status"] == "succeeded"
    checkpoints = service.client.get(f"/v1/jobs/{job['id']}/checkpoints", headers=service.headers()).json()["data"]
    for checkpoint in checkpoints:
        assert set(checkpoint["metrics"]) == {"accuracy"}
        assert checkpoint["metrics"]["accuracy"] in {i / 6 for i in range(7)}


def test_engine_error_is_recorded_and_the_worker_keeps_serving(service, text_dataset):
    job = submit(service, {**TINY, "dataset_id": text_dataset["id"], "model": "no-such-org/no-such-model"}).json()
    failed = wait_finished(service, job["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "model_not_found" and "no-such-org/no-such-model" in failed["error"]["message"]
    events = service.client.get(f"/v1/jobs/{job['id']}/events", headers=service.headers()).json()["data"]
    assert events[-1]["type"] == "error" and events[-1]["data"]["code"] == "model_not_found"
    after = submit(service, {**TINY, "dataset_id": text_dataset["id"], "seed": 11}).json()
    assert wait_finished(service, after["id"])["status"] == "succeeded"


def test_graceful_worker_shutdown_requeues_and_resumes(service, text_dataset):
    job = submit(service, {**SLOW, "dataset_id": text_dataset["id"], "seed": 5}).json()
    wait_for(service, job["id"], lambda j: j["status"] == "running" and j["progress"]["step"] >= 2)
    service.worker.stop()  # SIGTERM: the job stops at its next step and goes back to the queue
    handed_back = service.client.get(f"/v1/jobs/{job['id']}", headers=service.headers()).json()
    assert handed_back["status"] == "queued" and handed_back["progress"]["step"] < SLOW["steps"]
    service.worker.start()
    final = wait_finished(service, job["id"], timeout=240)
    assert final["status"] == "succeeded" and final["checkpoint_count"] == 2
    events = service.client.get(f"/v1/jobs/{job['id']}/events?limit=1000", headers=service.headers()).json()["data"]
    assert any(e["type"] == "queued" and e["data"].get("reason") == "worker shutdown" for e in events)
    started = [e["data"] for e in events if e["type"] == "started"]
    assert len(started) == 2 and started[1]["resumed_from_step"] >= handed_back["progress"]["step"] >= 2


def test_one_shot_baseline_is_one_step(service, text_dataset):
    job = submit(service, {**TINY, "dataset_id": text_dataset["id"], "method": "magnitude"}).json()
    assert job["progress"]["total_steps"] == 1
    final = wait_finished(service, job["id"])
    assert final["status"] == "succeeded" and final["checkpoint_count"] == 2
    assert final["progress"]["step"] == final["progress"]["total_steps"] == 1
