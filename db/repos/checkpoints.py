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
    for name in ("reconstruction", "reconstruction_sha256", "unreconstructed_metrics", "reconstruction_rejected"):
        setattr(existing, name, getattr(checkpoint, name))
    session.flush()
    return existing, False


def for_job(session: Session, job_id: str) -> list[Checkpoint]:
    return list(
        session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.target_sparsity))
    )


def structures_for_job(session: Session, job_id: str) -> list[dict]:
    """The kept structure of each of the job's checkpoints, by target."""
    query = select(Checkpoint.structure).where(Checkpoint.job_id == job_id).order_by(Checkpoint.target_sparsity)
    return list(session.scalars(query))


def page_for_job(session: Session, job_id: str, limit: int, after: str | None) -> tuple[list[Checkpoint], bool]:
    """A page of the job's checkpoints by target, after the checkpoint `after` (its id is the cursor)."""
    query = select(Checkpoint).where(Checkpoint.job_id == job_id)
    if after:
        cursor = session.get(Checkpoint, after)
        if cursor is None or cursor.job_id != job_id:
            return [], False
        query = query.where(Checkpoint.target_sparsity > cursor.target_sparsity)
    rows = list(session.scalars(query.order_by(Checkpoint.target_sparsity).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


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
