"""Upload → submit → poll → checkpoints → select by budget → download → load with transformers."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
import torch

from gisp.config import PruneSettings
from tests.service.conftest import MODEL_ROOT, TEXT

pytestmark = pytest.mark.service


def test_job_runs_to_completion_with_progress_and_events(service, finished_job):
    job = finished_job
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 4
    assert job["progress"]["sparsity"] == pytest.approx(0.4, abs=0.02)
    assert job["error"] is None and job["checkpoint_count"] == 2
    assert job["started_at"] and job["finished_at"]
    events = service.client.get(f"/v1/jobs/{job['id']}/events", headers=service.headers()).json()["data"]
    types = [e["type"] for e in events]
    assert types[0] == "queued" and types[1] == "started" and types[-1] == "finished"
    assert types.count("step") == 4 and types.count("checkpoint") == 2
    # the default refit is its own phase, one event per layer of each of the guard's two passes
    # (the checked fit, then the kept one) of each checkpoint, before it registers
    assert types.count("reconstruction") == 2 * 2 * 5
    assert types.index("reconstruction") > max(i for i, t in enumerate(types) if t == "step")
    assert job["progress"]["phase"] == "reconstruction" and job["progress"]["phase_progress"] == pytest.approx(1.0)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    later = service.client.get(f"/v1/jobs/{job['id']}/events?after=3", headers=service.headers()).json()["data"]
    assert [e["seq"] for e in later] == [e["seq"] for e in events[3:]]
    trajectory = service.rt.store.trajectory_path(job["id"])
    assert trajectory.is_file()


def test_checkpoints_are_registered_nested_and_selectable(service, finished_job):
    response = service.client.get(f"/v1/jobs/{finished_job['id']}/checkpoints", headers=service.headers())
    assert response.status_code == 200
    checkpoints = response.json()["data"]
    assert [c["target_sparsity"] for c in checkpoints] == [0.2, 0.4]
    assert response.json()["nested"] is True  # a ranking method's family
    small, smaller = checkpoints
    assert small["parameter_count"] > smaller["parameter_count"]
    assert small["bytes"] == small["parameter_count"] * 4
    assert small["flops_per_token"] > smaller["flops_per_token"]
    assert "perplexity" in small["metrics"] and small["metrics"]["perplexity"] < smaller["metrics"]["perplexity"]
    for checkpoint in checkpoints:  # measured on the refit weights, the cut ones' figure beside it
        assert checkpoint["reconstruction"] == PruneSettings(targets=[0.5]).reconstruct != "none"
        assert checkpoint["metrics"]["perplexity"] < checkpoint["unreconstructed_metrics"]["perplexity"]
    assert len(small["layers"]) == 5 and set(small["layers"][0]) == {"kv_groups", "channels"}
    for a, b in zip(small["layers"], smaller["layers"], strict=True):
        assert b["kv_groups"] <= a["kv_groups"] and b["channels"] <= a["channels"]

    def select(**bounds):
        return service.client.get(
            f"/v1/jobs/{finished_job['id']}/checkpoints/select", params=bounds, headers=service.headers()
        )

    assert select(max_params=small["parameter_count"]).json()["id"] == small["id"]
    assert select(max_params=small["parameter_count"] - 1).json()["id"] == smaller["id"]
    assert select(max_bytes=smaller["bytes"], max_flops_per_token=10**12).json()["id"] == smaller["id"]
    none = select(max_params=smaller["parameter_count"] - 1)
    assert none.status_code == 404 and none.headers["content-type"].startswith("application/problem+json")
    assert smaller["id"] in none.json()["detail"]
    missing = select()
    assert missing.status_code == 422 and {e["field"] for e in missing.json()["errors"]} >= {"max_params"}
    single = service.client.get(f"/v1/checkpoints/{small['id']}", headers=service.headers()).json()
    assert single == small


def test_download_loads_with_transformers_and_matches_materialize(service, finished_job, tmp_path):
    from transformers import AutoModelForCausalLM

    import gisp
    from gisp.trajectory import Trajectory

    checkpoints = service.client.get(f"/v1/jobs/{finished_job['id']}/checkpoints", headers=service.headers()).json()
    checkpoint = checkpoints["data"][1]
    response = service.client.get(f"/v1/checkpoints/{checkpoint['id']}/download", headers=service.headers())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-tar"
    assert response.headers["accept-ranges"] == "bytes"
    sha = hashlib.sha256(response.content).hexdigest()
    assert response.headers["etag"] == f'"{sha}"'
    again = service.client.get(f"/v1/checkpoints/{checkpoint['id']}/download", headers=service.headers())
    assert again.content == response.content  # cached, and deterministic
    assert service.client.get(f"/v1/checkpoints/{checkpoint['id']}", headers=service.headers()).json()["sha256"] == sha
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        names = tar.getnames()
        assert "config.json" in names and "model.safetensors" in names
        tar.extractall(tmp_path / "ckpt", filter="data")
    weights = (tmp_path / "ckpt" / "model.safetensors").stat().st_size
    assert checkpoint["bytes"] <= weights < checkpoint["bytes"] + 64 * 1024  # plus the safetensors header
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ckpt"), trust_remote_code=True).eval()
    trajectory = Trajectory.load(service.rt.store.trajectory_path(finished_job["id"]))
    trajectory.base_model = str(MODEL_ROOT / trajectory.base_model.rsplit("/", 1)[-1])
    record = trajectory.checkpoint(checkpoint["target_sparsity"])
    tensors = service.rt.store.reconstruction_path(finished_job["id"], record.name)
    reference = gisp.materialize(trajectory, record.target, tensors=tensors).model.eval()
    ids = torch.randint(0, 512, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-4)
    assert sum(p.numel() for p in model.parameters()) == checkpoint["parameter_count"]
    # the recorded metrics are those of the files downloaded: the same held-out windows, evaluated afresh
    from gisp.eval.perplexity import heldout_metrics
    from gisp.objectives.base import pad_token_id

    settings = PruneSettings.from_dict(trajectory.settings)
    heldout = gisp.prepare(trajectory.base_model, TEXT, settings).heldout
    fresh = heldout_metrics(model, heldout, pad_token_id(reference_tokenizer(tmp_path / "ckpt")))
    assert fresh["perplexity"] == pytest.approx(checkpoint["metrics"]["perplexity"], rel=1e-4)


def reference_tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def test_range_download_returns_206(service, finished_job):
    checkpoint = service.client.get(f"/v1/jobs/{finished_job['id']}/checkpoints", headers=service.headers()).json()
    checkpoint_id = checkpoint["data"][0]["id"]
    full = service.client.get(f"/v1/checkpoints/{checkpoint_id}/download", headers=service.headers())
    part = service.client.get(
        f"/v1/checkpoints/{checkpoint_id}/download", headers={**service.headers(), "Range": "bytes=100-1099"}
    )
    assert part.status_code == 206
    assert part.content == full.content[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(full.content)}"
    tail = service.client.get(
        f"/v1/checkpoints/{checkpoint_id}/download", headers={**service.headers(), "Range": "bytes=-10"}
    )
    assert tail.status_code == 206 and tail.content == full.content[-10:]
    cached = service.client.get(
        f"/v1/checkpoints/{checkpoint_id}/download",
        headers={**service.headers(), "If-None-Match": full.headers["etag"]},
    )
    assert cached.status_code == 304
