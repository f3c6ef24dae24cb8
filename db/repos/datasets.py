"""Datasets: metadata rows; the bytes live in the artifact store by sha256."""

from __future__ import annotations

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from gisp_service.db.models import Dataset, Job, utcnow
from gisp_service.db.repos.base import TenantScoped

ACTIVE = ("queued", "running")


def add(session: Session, dataset: Dataset) -> Dataset:
    session.add(dataset)
    session.flush()
    return dataset


# a tenant no longer sees a deleted dataset; the worker (get_any) still reads a job's data
_scoped = TenantScoped(Dataset, Dataset.deleted_at.is_(None))
get = _scoped.get
get_any = _scoped.get_any
page = _scoped.page


def in_use(session: Session, dataset_id: str) -> bool:
    used = (Job.dataset_id == dataset_id) | (Job.eval_dataset_id == dataset_id)
    return bool(session.scalar(select(exists().where(used, Job.status.in_(ACTIVE)))))


def soft_delete(session: Session, dataset: Dataset) -> None:
    dataset.deleted_at = utcnow()
    session.flush()


def stored_bytes(session: Session, tenant_id: str) -> int:
    """Bytes of the tenant's visible uploads (what its storage quota counts)."""
    query = select(func.coalesce(func.sum(Dataset.bytes), 0)).where(
        Dataset.tenant_id == tenant_id, Dataset.deleted_at.is_(None)
    )
    return int(session.scalar(query) or 0)
