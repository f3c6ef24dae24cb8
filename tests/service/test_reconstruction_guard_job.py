"""A refit the stage's guard rejects, through the real worker: the checkpoint row says why (the
API, the client's view of it, the dashboard's table), its weights are the ones as cut and its
metrics are theirs.

The rejection is real, not injected: the old ridge-toward-zero `lstsq-select` on the service
tests' 8 × 64 calibration tokens fits the held-in sequences and raises the loss on the held-back
ones at 0.4 (docs/benchmarks.md §8, "The guard"); the anchored default passes the same check.
The job turns the input-side refit and the residual drift off: with them (the defaults since
2026-12-03 and 2026-12-04) the same `lstsq-select` refit may pass the guard here, and the rejection
this test needs would not happen.
"""

from __future__ import annotations

import pytest

from tests.service.conftest import TINY, submit, wait_finished

# the guard is the engine's; both back-ends carry its record alike: the PostgreSQL + Redis copy is not run (CI time)
pytestmark = [pytest.mark.service, pytest.mark.embedded_only]


def test_a_rejected_refit_is_recorded_on_the_checkpoint(service, text_dataset):
    job = {
        **TINY,
        "dataset_id": text_dataset["id"],
        "reconstruct": "lstsq-select",
        "reconstruct_inputs": False,
        "reconstruct_residual": 0.0,
    }
    response = submit(service, job)
    assert response.status_code == 201, response.text
    job = wait_finished(service, response.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    page = service.client.get(f"/v1/jobs/{job['id']}/checkpoints", headers=service.headers()).json()
    by_target = {c["target_sparsity"]: c for c in page["data"]}
    rejected = [c for c in page["data"] if c["reconstruction_rejected"]]
    assert [c["target_sparsity"] for c in rejected] == [0.4], by_target
    (checkpoint,) = rejected
    assert "raises the perplexity loss" in checkpoint["reconstruction_rejected"]
    assert checkpoint["reconstruction"] is None
    assert checkpoint["metrics"] == checkpoint["unreconstructed_metrics"]
    kept = by_target[0.2]
    assert kept["reconstruction"] == "lstsq-select" and kept["reconstruction_rejected"] is None
    assert kept["metrics"]["perplexity"] != kept["unreconstructed_metrics"]["perplexity"]
    # the reason is the job's warning event too, word for word
    events = service.client.get(f"/v1/jobs/{job['id']}/events", headers=service.headers()).json()["data"]
    warnings = [e for e in events if e["type"] == "warning"]
    assert any(checkpoint["reconstruction_rejected"] in str(e) for e in warnings), warnings
    single = service.client.get(f"/v1/checkpoints/{checkpoint['id']}", headers=service.headers()).json()
    assert single["reconstruction_rejected"] == checkpoint["reconstruction_rejected"]
