"""Checkpoint logic: budget selection and the download artifact."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from gisp.structure import Structure, is_nested
from gisp_service.api.checkpoints.materialize import NotMaterializable, materialize_checkpoint
from gisp_service.api.errors import ApiProblem, found
from gisp_service.api.jobs import service as job_service
from gisp_service.core import model_refs
from gisp_service.core.runtime import Runtime
from gisp_service.db.models import Checkpoint
from gisp_service.db.repos import checkpoints as checkpoint_repo
from gisp_service.db.session import read_session

MEDIA_TYPES = {"hf": "application/x-tar", "gguf": "application/octet-stream"}
SUFFIXES = {"hf": "tar", "gguf": "gguf"}


@dataclass(frozen=True)
class Download:
    path: Path
    sha256: str
    filename: str
    media_type: str


def get(session: Session, tenant_id: str, checkpoint_id: str) -> Checkpoint:
    return found(checkpoint_repo.get(session, tenant_id, checkpoint_id), "checkpoint", checkpoint_id, "checkpoint_id")


def for_job(session: Session, tenant_id: str, job_id: str, limit: int, after: str | None) -> dict[str, Any]:
    """A page of the job's checkpoints, and whether all of them (not only this page) are nested."""
    job = job_service.get(session, tenant_id, job_id)
    rows, more = checkpoint_repo.page_for_job(session, job.id, limit, after)
    structures = checkpoint_repo.structures_for_job(session, job.id)
    return {"data": rows, "has_more": more, "nested": is_nested(map(Structure.from_dict, structures))}


def select(
    session: Session,
    tenant_id: str,
    job_id: str,
    max_params: int | None,
    max_bytes: int | None,
    max_flops: int | None,
) -> Checkpoint:
    """The least-pruned checkpoint of the job within every given bound."""
    checkpoints = checkpoint_repo.for_job(session, job_service.get(session, tenant_id, job_id).id)
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


def download(rt: Runtime, tenant_id: str, checkpoint_id: str, format: str = "hf") -> Download:
    """The checkpoint's tar (`hf`) or GGUF file (`gguf`), materialized first if needed (outside
    any request session: it can take a while, and the materializer keeps its own short transactions)."""
    with read_session(rt.read_sessions) as session:
        checkpoint = get(session, tenant_id, checkpoint_id)
        job_id, target = checkpoint.job_id, checkpoint.target_sparsity
    path, sha256 = artifact(rt, checkpoint_id, format)
    filename = f"{job_id}-sparsity-{target:.2f}.{SUFFIXES[format]}"
    return Download(path, sha256, filename, MEDIA_TYPES[format])


def artifact(rt: Runtime, checkpoint_id: str, format: str = "hf") -> tuple[Path, str]:
    try:
        return materialize_checkpoint(
            rt.sessions,
            rt.store,
            checkpoint_id,
            lambda name: model_refs.resolve(name, rt.settings.model_root_paths),
            format,
        )
    except NotMaterializable as exc:
        raise ApiProblem(409, f"checkpoint {checkpoint_id!r} cannot be built: {exc}", "checkpoint_id") from None
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # nothing half-built stays behind (temp files are removed, no sha256 is recorded): a retry
        # once space is freed builds it afresh
        detail = f"checkpoint {checkpoint_id!r} cannot be built now: the server's artifact store is full"
        raise ApiProblem(507, detail, headers={"Retry-After": "60"}) from None
