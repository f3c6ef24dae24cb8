"""What the dashboard's pages show, gathered from the domain services (no SQL here): a job's
state for its page and plots, and the per-layer map of a checkpoint against the dense widths."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from gisp.config import MAX_TARGETS
from gisp_service.api.checkpoints import service as checkpoint_service
from gisp_service.api.checkpoints.schemas import CheckpointOut
from gisp_service.api.jobs import service as job_service
from gisp_service.api.jobs.schemas import JobOut
from gisp_service.core.runtime import Runtime
from gisp_service.db.models import Checkpoint

HEADLINE = ("perplexity", "accuracy")


def _json(model: type, value: Any) -> dict[str, Any]:
    return model.model_validate(value).model_dump(mode="json")


def trajectory(rt: Runtime, job_id: str) -> dict[str, Any]:
    path = rt.store.trajectory_path(job_id)
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):  # being rewritten: the next poll reads it
        return {}


def checkpoint_json(row: Checkpoint) -> dict[str, Any]:
    data = _json(CheckpointOut, row)
    data["unreconstructed_metrics"] = dict(getattr(row, "unreconstructed_metrics", None) or {})
    return data


def headline(metrics_list: list[dict[str, float]]) -> str | None:
    for name in HEADLINE:
        if any(name in m for m in metrics_list):
            return name
    return next((name for m in metrics_list for name in sorted(m)), None)


def job_state(session: Session, rt: Runtime, tenant_id: str, job_id: str) -> dict[str, Any]:
    """Everything the job page draws: the job, its step curve, checkpoints and the dense point."""
    job = job_service.get(session, tenant_id, job_id)
    steps, seq, more = [], 0, True
    while more:
        page = job_service.events(session, tenant_id, job_id, seq, 1000)
        for event in page["data"]:
            seq = event.seq
            if event.type == "step":
                steps.append({k: event.data.get(k) for k in ("step", "loss", "sparsity")})
        more = page["has_more"]
    listing = checkpoint_service.for_job(session, tenant_id, job_id, MAX_TARGETS, None)  # one per target
    checkpoints = [checkpoint_json(c) for c in listing["data"]]
    dense = trajectory(rt, job_id).get("dense_metrics") or {}
    metric = headline([c["metrics"] for c in checkpoints] + [dense])
    return {
        "job": _json(JobOut, job_service.out(session, job)),
        "steps": steps,
        "last_seq": seq,
        "checkpoints": checkpoints,
        "nested": listing["nested"],
        "dense": {"sparsity": 0.0, "metrics": dense},
        "metric": metric,
    }


def layer_map(rt: Runtime, checkpoint: Checkpoint) -> list[dict[str, Any]]:
    """Per layer: kept KV groups and MLP channels, with the dense widths from the trajectory."""
    arch = trajectory(rt, checkpoint.job_id).get("arch") or {}
    dense_groups, dense_channels = arch.get("num_kv_heads"), arch.get("intermediate_size")
    rows = []
    for index, layer in enumerate(checkpoint.layers):
        groups_total = dense_groups or max(layer["kv_groups"], 1)
        channels_total = dense_channels or max(layer["channels"], 1)
        rows.append(
            {
                "index": index,
                "kv_groups": layer["kv_groups"],
                "kv_total": groups_total,
                "channels": layer["channels"],
                "channels_total": channels_total,
                "channels_pct": round(100 * layer["channels"] / channels_total),
                "kv_pct": round(100 * layer["kv_groups"] / groups_total),
            }
        )
    return rows
