"""Webhook endpoints, their deliveries and each delivery's attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gisp_service.db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from gisp_service.db.repos.base import TenantScoped

_endpoints = TenantScoped(WebhookEndpoint, WebhookEndpoint.deleted_at.is_(None))
get = _endpoints.get
page = _endpoints.page


def add(session: Session, row: WebhookEndpoint | WebhookDelivery | WebhookAttempt) -> None:
    session.add(row)
    session.flush()


def soft_delete(session: Session, endpoint: WebhookEndpoint) -> None:
    endpoint.deleted_at = utcnow()
    session.flush()


def subscribed(session: Session, tenant_id: str, event_type: str) -> list[WebhookEndpoint]:
    """The tenant's live endpoints that asked for `event_type` (filtered here: JSON lists are not
    queryable alike on every backend, and a tenant has few endpoints)."""
    rows = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.deleted_at.is_(None))
    )
    return [row for row in rows if event_type in row.events]


def endpoint_any(session: Session, endpoint_id: str) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, endpoint_id)


def delivery(session: Session, endpoint_id: str, delivery_id: str) -> WebhookDelivery | None:
    return session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id)
    )


def delivery_any(session: Session, delivery_id: str, lock: bool = False) -> WebhookDelivery | None:
    query = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
    return session.scalar(query.with_for_update() if lock else query)


def deliveries(session: Session, endpoint_id: str, limit: int, after: str | None) -> tuple[list[WebhookDelivery], bool]:
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if after:
        query = query.where(WebhookDelivery.id < after)
    rows = list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def attempts_of(session: Session, delivery_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
    found: dict[str, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    if delivery_ids:
        query = select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids))
        for row in session.scalars(query.order_by(WebhookAttempt.attempt)):
            found[row.delivery_id].append(row)
    return found


def record_attempt(
    session: Session,
    delivery: WebhookDelivery,
    status_code: int | None,
    error: str | None,
    latency: float,
    status: str,
    next_attempt_at: datetime | None = None,
) -> int:
    """Count and record one attempt, and set the delivery's state after it; returns its number."""
    delivery.attempts += 1
    delivery.status, delivery.next_attempt_at = status, next_attempt_at
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempt=delivery.attempts,
            status_code=status_code,
            error=error,
            latency_seconds=latency,
        )
    )
    session.flush()
    return delivery.attempts
