"""A `tyr` job through the real worker: search progress arrives as `search` events, and every
target becomes a registered checkpoint at exactly its sparsity."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch
from transformers import AutoModelForCausalLM

from gisp.export import materialize
from gisp.trajectory import Trajectory
from tests.service.conftest import MODEL_ROOT, TINY, TYR_FAULT_SEED, submit, wait_finished

# tyr's search and resume are the engine's and both back-ends carry them alike:
# the PostgreSQL + Redis copy is not run (CI time)
pytestmark = [pytest.mark.service, pytest.mark.embedded_only]

TYR = {
    **TINY,
    "method": "tyr",
    "targets": [0.3, 0.5],
    "tyr_rounds": 1,
    "tyr_generations": 2,
    "tyr_offspring": 4,
    "tyr_levels": 5,
    "tyr_stage_samples": [2, 8],
    "tyr_stage_keep": [2],
    "tyr_anchor": True,  # not the default: the job's setting must reach the worker's run
}


def test_tyr_job_reports_its_search_and_registers_each_target(service, text_dataset, tmp_path):
    response = submit(service, {**TYR, "dataset_id": text_dataset["id"]})
    assert response.status_code == 201, response.text
    job = wait_finished(service, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["method"] == "tyr" and job["progress"]["total_steps"] == 2  # one step per target
    assert job["tyr_anchor"] is True
    events = service.client.get(f"/v1/jobs/{job['id']}/events?limit=500", headers=service.headers()).json()["data"]
    search = [e["data"] for e in events if e["type"] == "search"]
    generations = [d for d in search if d["phase"] == "search"]
    assert {d["target"] for d in generations} == {0.3, 0.5}
    assert all(d["best_fitness"] >= 0 for d in generations)
    assert [d["done"] for d in search if d["phase"] == "ladder" and d["target"] == 0.3] == [1, 2, 3, 4, 5]
    listing = service.client.get(f"/v1/jobs/{job['id']}/checkpoints", headers=service.headers()).json()
    checkpoints = listing["data"]
    assert [c["target_sparsity"] for c in checkpoints] == [0.3, 0.5]
    assert all(abs(c["sparsity"] - c["target_sparsity"]) < 0.002 for c in checkpoints)
    # the listing says what the stored structures are: the two targets were searched apart and the
    # 0.5 structure is not a subnetwork of the 0.3 one, which a client selecting by budget must know
    trajectory = Trajectory.load(service.rt.store.trajectory_path(job["id"]))
    assert trajectory.settings["tyr_anchor"] is True  # the worker ran with the job's setting
    small, large = (trajectory.checkpoint(t).structure for t in (0.3, 0.5))
    assert listing["nested"] is large.is_subset_of(small) is False
    first = service.client.get(f"/v1/jobs/{job['id']}/checkpoints?limit=1", headers=service.headers()).json()
    assert len(first["data"]) == 1 and first["has_more"] and first["nested"] is False  # the family's, not the page's
    # the download carries the re-solved weights: it computes what the trajectory and tensors rebuild
    checkpoint = checkpoints[1]
    assert trajectory.checkpoint(0.5).reconstruction == "tyr"
    assert_download_computes(service, job["id"], checkpoint["id"], trajectory, 0.5, tmp_path)


def assert_download_computes(service, job_id: str, checkpoint_id: str, trajectory, target: float, tmp_path) -> None:
    """The downloaded folder's logits equal what the trajectory and the stored tensors rebuild."""
    response = service.client.get(f"/v1/checkpoints/{checkpoint_id}/download", headers=service.headers())
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        tar.extractall(tmp_path / "ckpt", filter="data")
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ckpt"), trust_remote_code=True).eval()
    trajectory.base_model = str(MODEL_ROOT / trajectory.base_model.rsplit("/", 1)[-1])
    tensors = service.rt.store.reconstruction_path(job_id, trajectory.checkpoint(target).name)
    reference = materialize(trajectory, target, tensors=tensors).model.eval()
    ids = torch.randint(0, 512, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-4)


def test_tyr_job_with_the_stage_refit_registers_the_stages_weights(service, text_dataset, tmp_path):
    """`tyr_refit: stage`: the search's structures, then the reconstruction phase (its events),
    and the checkpoints carry the stage's refit, measured before and after; the download computes
    what the trajectory and the stored tensors rebuild."""
    body = {**TYR, "targets": [0.3, 0.5], "tyr_refit": "stage", "dataset_id": text_dataset["id"]}
    job = wait_finished(service, submit(service, body).json()["id"])
    assert job["status"] == "succeeded", job
    assert job["tyr_refit"] == "stage" and job["reconstruct"] == "lstsq-select-anchored"
    events = service.client.get(f"/v1/jobs/{job['id']}/events?limit=500", headers=service.headers()).json()["data"]
    assert any(e["type"] == "search" for e in events) and any(e["type"] == "reconstruction" for e in events)
    assert job["tyr_finalists"] == 8  # the stage judges the search's finalists by default, each target in turn
    judged = [
        (e["data"]["target"], e["data"]["done"], e["data"]["total"])
        for e in events
        if e["type"] == "search" and e["data"]["phase"] == "finalists"
    ]
    assert [t for t, done, total in judged if done == total] == [0.3, 0.5]  # one event per layer refit
    checkpoints = service.client.get(f"/v1/jobs/{job['id']}/checkpoints", headers=service.headers()).json()["data"]
    assert [c["target_sparsity"] for c in checkpoints] == [0.3, 0.5]
    for checkpoint in checkpoints:
        assert checkpoint["reconstruction"] == "lstsq-select-anchored" or checkpoint["reconstruction_rejected"]
        assert checkpoint["unreconstructed_metrics"]["perplexity"] > 0
    trajectory = Trajectory.load(service.rt.store.trajectory_path(job["id"]))
    kept = [r for r in trajectory.checkpoints if r.reconstruction is not None]
    assert kept, "the guard rejected every refit: nothing of the stage to check"
    record = kept[-1]
    chosen = next(c for c in checkpoints if c["target_sparsity"] == record.target)
    assert_download_computes(service, job["id"], chosen["id"], trajectory, record.target, tmp_path)


def test_tyr_worker_killed_in_the_ladders_resumes_them(service, text_dataset):
    """The worker dies (os._exit, as SIGKILL or the OOM killer would) right after building the
    second ladder layer of the first target; the reconciler re-queues the job, the next worker
    reads the two finished layers back from the job's folder instead of rebuilding them, and the
    job succeeds leaving no ladder files. The death is injected (TYR_FAULT_SEED, worker/faults.py):
    a kill from outside cannot land inside a ladder phase that lasts milliseconds on this model.
    That the result is byte-identical to an uninterrupted run's is tests/engine/test_tyr_resume.py's
    (a second job with this seed would die the same way)."""
    body = {**TYR, "targets": [0.3], "dataset_id": text_dataset["id"], "seed": TYR_FAULT_SEED}
    job = submit(service, body).json()
    worker = service.worker
    try:
        assert worker.process is not None and worker.process.wait(timeout=120) == 137  # died at the fault
        folder = service.rt.store.job_dir(job["id"]) / "tyr"
        layers = sorted(p.name for p in folder.rglob("layer-*.safetensors"))
        assert layers == ["layer-0000.safetensors", "layer-0001.safetensors"]  # what the dead worker finished
    finally:  # the next tests need a worker
        if worker.process is not None and worker.process.poll() is None:
            worker.kill()
        worker.start()
    final = wait_finished(service, job["id"], timeout=180)
    assert final["status"] == "succeeded", final
    events = service.client.get(f"/v1/jobs/{job['id']}/events?limit=500", headers=service.headers()).json()["data"]
    assert sum(1 for e in events if e["type"] == "started") == 2
    restart = max(e["seq"] for e in events if e["type"] == "started")
    ladder = [
        (e["data"]["done"], e["data"]["loaded"])
        for e in events
        if e["seq"] > restart and e["type"] == "search" and e["data"]["phase"] == "ladder"
    ]
    assert ladder == [(1, 1), (2, 2), (3, 2), (4, 2), (5, 2)]  # two layers read back, three built
    assert not folder.exists()  # nothing left once the checkpoint is registered
    checkpoint = service.client.get(f"/v1/jobs/{job['id']}/checkpoints", headers=service.headers()).json()["data"]
    response = service.client.get(f"/v1/checkpoints/{checkpoint[0]['id']}/download", headers=service.headers())
    assert response.status_code == 200, response.text
