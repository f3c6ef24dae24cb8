"""Checkpoint logic: budget selection and the download artifact."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from gisp_service.api.checkpoints.materialize import NotMaterializable, materialize_checkpoint
from gisp_service.api.errors import ApiProblem, not_found
from gisp_service.core import model_refs
from gisp_service.core.runtime import Runtime
from gisp_service.db.models import Checkpoint
from gisp_service.db.repos import checkpoints as checkpoint_repo


def get(session: Session, tenant_id: str, checkpoint_id: str) -> Checkpoint:
    checkpoint = checkpoint_repo.get(session, tenant_id, checkpoint_id)
    if checkpoint is None:
        raise not_found("checkpoint", checkpoint_id, "checkpoint_id")
    return checkpoint


def select(
    checkpoints: list[Checkpoint], max_params: int | None, max_bytes: int | None, max_flops: int | None
) -> Checkpoint:
    """The least-pruned checkpoint within every given bound."""
    bounds = {"max_params": max_params, "max_bytes": max_bytes, "max_flops_per_token": max_flops}
    if all(v is None for v in bounds.values()):
        raise ApiProblem(
            422,
            "give at least one bound: max_params, max_bytes or max_flops_per_token",
            errors=[{"field": name, "message": "at least one bound is required"} for name in bounds],
        )

    def fits(c: Checkpoint) -> bool:
        return (
            (max_params is None or c.parameter_count <= max_params)
            and (max_bytes is None or c.bytes <= max_bytes)
            and (max_flops is None or c.flops_per_token <= max_flops)
        )

    for checkpoint in sorted(checkpoints, key=lambda c: c.sparsity):
        if fits(checkpoint):
            return checkpoint
    if not checkpoints:
        raise ApiProblem(404, "the job has no checkpoints yet", "job_id")
    smallest = min(checkpoints, key=lambda c: c.parameter_count)
    given = [name for name, value in bounds.items() if value is not None]
    raise ApiProblem(
        404,
        f"no checkpoint fits; the smallest is {smallest.id} (target {smallest.target_sparsity:g}) with "
        f"{smallest.parameter_count} parameters, {smallest.bytes} bytes, {smallest.flops_per_token} FLOPs per token",
        errors=[{"field": name, "message": "no checkpoint within this bound"} for name in given],
    )


def artifact(rt: Runtime, checkpoint_id: str) -> tuple[Path, str]:
    try:
        return materialize_checkpoint(
            rt.sessions,
            rt.store,
            checkpoint_id,
            lambda name: model_refs.resolve(name, rt.settings.model_root_paths),
        )
    except NotMaterializable as exc:
        raise ApiProblem(409, f"checkpoint {checkpoint_id!r} cannot be built: {exc}", "checkpoint_id") from None
