"""A worker killed with SIGKILL mid-job, three times at random steps: after each restart the
reconciler re-queues the job (its heartbeat went stale), the new worker resumes from the stored
trajectory, and the job succeeds with checkpoint archives byte-identical to an undisturbed run's
(on both backends: SQLite + the SQLAlchemy broker, and PostgreSQL + Redis with the API and the
worker as separate processes)."""

from __future__ import annotations

import random

import pytest

from tests.service.conftest import SLOW, submit, wait_finished, wait_for

pytestmark = pytest.mark.service
BODY = {**SLOW, "steps": 12, "samples": 8, "seq_len": 64, "targets": [0.2, 0.4]}
KILLS = 3


def _tars(service, job_id: str) -> list[bytes]:
    listing = service.client.get(f"/v1/jobs/{job_id}/checkpoints", headers=service.headers()).json()["data"]
    tars = []
    for checkpoint in sorted(listing, key=lambda c: c["target_sparsity"]):
        response = service.client.get(f"/v1/checkpoints/{checkpoint['id']}/download", headers=service.headers())
        assert response.status_code == 200, response.text
        tars.append(response.content)
    return tars


def _starts(service, job_id: str) -> int:
    events = service.client.get(f"/v1/jobs/{job_id}/events?limit=100", headers=service.headers()).json()["data"]
    return sum(1 for e in events if e["type"] == "started")


def test_killed_worker_resumes_with_the_same_checkpoints(service, text_dataset):
    seed = random.randrange(1 << 16)
    kill_at = sorted(random.Random(seed).sample(range(1, BODY["steps"] - 4), KILLS))
    print(f"killing the worker once step {kill_at} is done (seed {seed})")
    body = {**BODY, "dataset_id": text_dataset["id"], "seed": 21}
    job = submit(service, body).json()
    progress = [0]
    for n, step in enumerate(kill_at, 1):
        # a kill lands once the job's current worker has started it (the n-th start) and has made
        # progress since the last kill: else the row of the dead worker would satisfy the wait
        target = max(step, progress[-1] + 1)
        wait_for(service, job["id"], lambda j, t=target: j["status"] == "running" and j["progress"]["step"] >= t)
        wait_for(service, job["id"], lambda j, n=n: _starts(service, j["id"]) >= n)
        service.worker.kill()
        at_kill = service.client.get(f"/v1/jobs/{job['id']}", headers=service.headers()).json()
        assert at_kill["status"] == "running" and at_kill["progress"]["step"] < BODY["steps"], at_kill
        progress.append(at_kill["progress"]["step"])
        service.worker.start()
    final = wait_finished(service, job["id"], timeout=240)
    assert final["status"] == "succeeded", final

    events = service.client.get(f"/v1/jobs/{job['id']}/events?limit=1000", headers=service.headers()).json()["data"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    started = [e["data"] for e in events if e["type"] == "started"]
    assert len(started) == KILLS + 1 and started[0]["resumed_from_step"] == 0
    for resumed, reached in zip(started[1:], progress[1:], strict=True):
        assert resumed["resumed_from_step"] >= reached  # never from zero, never behind what was done
    assert sum(1 for e in events if e["type"] == "queued" and e["data"].get("requeued")) == KILLS
    steps = [e["data"]["step"] for e in events if e["type"] == "step"]
    assert sorted(set(steps)) == list(range(1, BODY["steps"] + 1))
    assert len([e for e in events if e["type"] == "checkpoint"]) == len(BODY["targets"])  # none twice

    undisturbed = wait_finished(service, submit(service, body).json()["id"])
    assert undisturbed["status"] == "succeeded"
    assert _tars(service, job["id"]) == _tars(service, undisturbed["id"])


def test_a_worker_killed_during_reconstruction_resumes_without_redoing_steps_or_registered_checkpoints(
    service, text_dataset
):
    from gisp_service.db.repos import checkpoints as checkpoint_repo
    from gisp_service.db.session import write_transaction

    # few steps, many refit windows: the reconstruction phase is long enough to be caught in
    body = {**SLOW, "targets": [0.2, 0.3, 0.4, 0.5], "steps": 2, "samples": 8, "reconstruct_samples": 200}
    job = submit(service, {**body, "dataset_id": text_dataset["id"]}).json()
    wait_for(service, job["id"], lambda j: j["progress"]["phase"] == "reconstruction" and j["checkpoint_count"] >= 1)
    service.worker.kill()
    with write_transaction(service.rt.sessions) as session:
        before = {r.target_sparsity: r.id for r in checkpoint_repo.for_job(session, job["id"])}
    assert 1 <= len(before) < 4, before  # killed inside the phase

    service.worker.start()
    final = wait_finished(service, job["id"], timeout=240)
    assert final["status"] == "succeeded", final
    events = service.client.get(f"/v1/jobs/{job['id']}/events?limit=1000", headers=service.headers()).json()["data"]
    restart = max(e["seq"] for e in events if e["type"] == "started")
    assert [e["data"]["step"] for e in events if e["type"] == "step"] == [1, 2]  # no step redone
    assert next(e for e in events if e["seq"] == restart)["data"]["resumed_from_step"] == 2
    redone = {e["data"]["target_sparsity"] for e in events if e["type"] == "reconstruction" and e["seq"] > restart}
    assert redone and not redone & set(before)  # the registered checkpoints are not refit again
    assert sorted(e["data"]["target_sparsity"] for e in events if e["type"] == "checkpoint") == [0.2, 0.3, 0.4, 0.5]
    with write_transaction(service.rt.sessions) as session:
        rows = checkpoint_repo.for_job(session, job["id"])
    assert all(before[r.target_sparsity] == r.id for r in rows if r.target_sparsity in before)
    assert all(r.reconstruction == "lstsq-select-anchored" and r.unreconstructed_metrics for r in rows)
    for row in rows:  # every refit checkpoint downloads: its tensors were kept across the restart
        response = service.client.get(f"/v1/checkpoints/{row.id}/download", headers=service.headers())
        assert response.status_code == 200, response.text
