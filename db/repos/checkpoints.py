"""The checkpoint registry: one row per target crossed, holding the kept structure and sizes;
weights are materialized later, on demand, and the tar's sha256 recorded then."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gisp_service.db.models import Checkpoint
from gisp_service.db.repos.base import TenantScoped


def upsert(session: Session, checkpoint: Checkpoint) -> tuple[Checkpoint, bool]:
    """Insert, or refresh the row of the same (job, target): a resumed job may cross a target again."""
    existing = session.scalar(
        select(Checkpoint).where(
            Checkpoint.job_id == checkpoint.job_id, Checkpoint.target_sparsity == checkpoint.target_sparsity
        )
    )
    if existing is None:
        session.add(checkpoint)
        session.flush()
        return checkpoint, True
    for name in ("sparsity", "parameter_count", "prunable_parameter_count", "bytes", "flops_per_token", "step"):
        setattr(existing, name, getattr(checkpoint, name))
    existing.metrics, existing.layers, existing.structure = checkpoint.metrics, checkpoint.layers, checkpoint.structure
    for name in ("reconstruction", "reconstruction_sha256", "unreconstructed_metrics"):
        setattr(existing, name, getattr(checkpoint, name))
    session.flush()
    return existing, False


def for_job(session: Session, job_id: str) -> list[Checkpoint]:
    return list(
        session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.target_sparsity))
    )


def count_for_job(session: Session, job_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(Checkpoint).where(Checkpoint.job_id == job_id)) or 0)


def counts_for_jobs(session: Session, job_ids: list[str]) -> dict[str, int]:
    if not job_ids:
        return {}
    rows = session.execute(
        select(Checkpoint.job_id, func.count()).where(Checkpoint.job_id.in_(job_ids)).group_by(Checkpoint.job_id)
    )
    return {job_id: int(n) for job_id, n in rows}


_scoped = TenantScoped(Checkpoint)
get = _scoped.get
get_any = _scoped.get_any


def set_artifact(session: Session, checkpoint_id: str, sha256: str, path: str, format: str = "hf") -> None:
    """Record a built artifact: the tar (`hf`) or the GGUF file (`gguf`)."""
    checkpoint = session.get(Checkpoint, checkpoint_id)
    if checkpoint is not None:
        if format == "gguf":
            checkpoint.gguf_sha256, checkpoint.gguf_path = sha256, path
        else:
            checkpoint.sha256, checkpoint.artifact_path = sha256, path
        session.flush()
