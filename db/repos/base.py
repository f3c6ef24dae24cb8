"""Reads every tenant-owned table shares: one row of a tenant (another tenant's rows do not
exist for it), one row by id alone (the worker's view), and a cursor page, newest first (ids sort
by creation time)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from gisp_service.db.models import Base

Row = TypeVar("Row", bound=Base)


class TenantScoped(Generic[Row]):
    """`visible` filters rows a tenant no longer sees (e.g. soft-deleted ones)."""

    def __init__(self, model: type[Row], *visible: ColumnElement[bool]) -> None:
        self.model, self.visible = model, visible

    def get(self, session: Session, tenant_id: str, row_id: str) -> Row | None:
        model: Any = self.model
        return session.scalar(select(model).where(model.id == row_id, model.tenant_id == tenant_id, *self.visible))

    def get_any(self, session: Session, row_id: str) -> Row | None:
        """By id alone, whatever its tenant or visibility: for the worker and the materializer."""
        return session.get(self.model, row_id)

    def page(
        self, session: Session, tenant_id: str, limit: int, after: str | None, *where: ColumnElement[bool]
    ) -> tuple[list[Row], bool]:
        model: Any = self.model
        query = select(model).where(model.tenant_id == tenant_id, *self.visible, *where)
        if after:
            query = query.where(model.id < after)
        rows = list(session.scalars(query.order_by(model.id.desc()).limit(limit + 1)))
        return rows[:limit], len(rows) > limit
