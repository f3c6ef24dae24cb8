"""Datasets: metadata rows; the bytes live in the artifact store by sha256."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from gisp_service.db.models import Dataset, Job, utcnow

ACTIVE = ("queued", "running")


def add(session: Session, dataset: Dataset) -> Dataset:
    session.add(dataset)
    session.flush()
    return dataset


def get(session: Session, tenant_id: str, dataset_id: str) -> Dataset | None:
    return session.scalar(
        select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id, Dataset.deleted_at.is_(None))
    )


def get_any(session: Session, dataset_id: str) -> Dataset | None:
    """By id alone, deleted or not: the worker reads a job's data even if its row was deleted since."""
    return session.get(Dataset, dataset_id)


def page(session: Session, tenant_id: str, limit: int, after: str | None) -> tuple[list[Dataset], bool]:
    query = select(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.deleted_at.is_(None))
    if after:
        query = query.where(Dataset.id < after)
    rows = list(session.scalars(query.order_by(Dataset.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def in_use(session: Session, dataset_id: str) -> bool:
    used = (Job.dataset_id == dataset_id) | (Job.eval_dataset_id == dataset_id)
    return bool(session.scalar(select(exists().where(used, Job.status.in_(ACTIVE)))))


def soft_delete(session: Session, dataset: Dataset) -> None:
    dataset.deleted_at = utcnow()
    session.flush()
