"""A worker killed with SIGKILL mid-job: after a restart the reconciler re-queues the job (its
heartbeat went stale), the new worker resumes from the stored trajectory, and the result has the
same checkpoints as an uninterrupted run."""

from __future__ import annotations

import pytest

from tests.service.conftest import SLOW, submit, wait_finished, wait_for

pytestmark = pytest.mark.service


def test_killed_worker_resumes_with_the_same_checkpoints(service, text_dataset):
    import gisp
    from gisp_service.db.repos import checkpoints as checkpoint_repo
    from gisp_service.db.session import write_transaction
    from tests.service.conftest import MODEL, MODEL_ROOT

    job = submit(service, {**SLOW, "dataset_id": text_dataset["id"]}).json()
    wait_for(service, job["id"], lambda j: j["status"] == "running" and j["progress"]["step"] >= 3)
    service.worker.kill()
    at_kill = service.client.get(f"/v1/jobs/{job['id']}", headers=service.headers()).json()
    assert at_kill["status"] == "running" and at_kill["progress"]["step"] < SLOW["steps"]

    service.worker.start()
    final = wait_finished(service, job["id"], timeout=240)
    assert final["status"] == "succeeded", final
    events = service.client.get(f"/v1/jobs/{job['id']}/events?limit=1000", headers=service.headers()).json()["data"]
    started = [e["data"] for e in events if e["type"] == "started"]
    assert len(started) == 2 and started[0]["resumed_from_step"] == 0
    assert started[1]["resumed_from_step"] >= at_kill["progress"]["step"] >= 3  # not from zero
    assert any(e["type"] == "queued" and e["data"].get("requeued") for e in events)
    steps = [e["data"]["step"] for e in events if e["type"] == "step"]
    assert sorted(set(steps)) == list(range(1, SLOW["steps"] + 1))

    dataset = text_dataset
    settings = gisp.PruneSettings(
        targets=SLOW["targets"], steps=SLOW["steps"], samples=SLOW["samples"], seq_len=SLOW["seq_len"], seed=0
    )
    reference, _ = gisp.run(
        str(MODEL_ROOT / MODEL), service.rt.store.upload_path(dataset["sha256"], dataset["format"]), settings
    )
    with write_transaction(service.rt.sessions) as session:
        rows = checkpoint_repo.for_job(session, job["id"])
    assert [r.target_sparsity for r in rows] == [c.target for c in reference.checkpoints]
    for row, record in zip(rows, reference.checkpoints, strict=True):
        assert row.structure == record.structure.to_dict()
        assert row.parameter_count == record.parameter_count
        assert row.metrics["perplexity"] == pytest.approx(record.metrics["perplexity"], rel=1e-4)


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
    assert all(r.reconstruction == "lstsq-select" and r.unreconstructed_metrics for r in rows)
    for row in rows:  # every refit checkpoint downloads: its tensors were kept across the restart
        response = service.client.get(f"/v1/checkpoints/{row.id}/download", headers=service.headers())
        assert response.status_code == 200, response.text
