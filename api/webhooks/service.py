"""Webhook logic: register an endpoint (URL checked, SSRF refused unless allowed, a secret made
and shown once), list, delete, list deliveries with their attempts, redeliver."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from sqlalchemy.orm import Session

from gisp_service.api.errors import ApiProblem, found
from gisp_service.api.webhooks import events, urls
from gisp_service.api.webhooks.schemas import WebhookCreate
from gisp_service.core.settings import Settings
from gisp_service.db.ids import new_id
from gisp_service.db.models import WebhookDelivery, WebhookEndpoint
from gisp_service.db.repos import webhooks as webhook_repo

SECRET_BYTES = 32


def new_secret() -> str:
    """`whsec_` + base64 of random bytes, as the Standard Webhooks spec writes secrets."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def create(session: Session, settings: Settings, tenant_id: str, body: WebhookCreate) -> dict[str, Any]:
    try:
        urls.check(body.url, settings.webhook_allow_private, resolve_required=False)
    except urls.RefusedURL as exc:
        raise ApiProblem(422, f"url: {exc}", "url") from None
    endpoint = WebhookEndpoint(
        id=new_id("whep"), tenant_id=tenant_id, url=body.url, events=sorted(set(body.events)), secret=new_secret()
    )
    webhook_repo.add(session, endpoint)
    return {**out(endpoint), "secret": endpoint.secret}


def out(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"id": endpoint.id, "url": endpoint.url, "events": endpoint.events, "created_at": endpoint.created_at}


def get(session: Session, tenant_id: str, webhook_id: str) -> WebhookEndpoint:
    return found(webhook_repo.get(session, tenant_id, webhook_id), "webhook", webhook_id, "webhook_id")


def page(session: Session, tenant_id: str, limit: int, after: str | None) -> dict[str, Any]:
    rows, more = webhook_repo.page(session, tenant_id, limit, after)
    return {"data": [out(r) for r in rows], "has_more": more}


def delete(session: Session, tenant_id: str, webhook_id: str) -> None:
    webhook_repo.soft_delete(session, get(session, tenant_id, webhook_id))


def delivery_out(delivery: WebhookDelivery, attempts: list) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "payload": delivery.payload,
        "created_at": delivery.created_at,
    }


def deliveries(session: Session, tenant_id: str, webhook_id: str, limit: int, after: str | None) -> dict[str, Any]:
    endpoint = get(session, tenant_id, webhook_id)
    rows, more = webhook_repo.deliveries(session, endpoint.id, limit, after)
    attempts = webhook_repo.attempts_of(session, [r.id for r in rows])
    return {"data": [delivery_out(r, attempts[r.id]) for r in rows], "has_more": more}


def redeliver(session: Session, settings: Settings, tenant_id: str, webhook_id: str, delivery_id: str) -> dict:
    """Send the delivery again (same webhook-id, a fresh retry budget); 409 while it is still being tried."""
    endpoint = get(session, tenant_id, webhook_id)
    delivery = found(webhook_repo.delivery(session, endpoint.id, delivery_id), "delivery", delivery_id, "delivery_id")
    if delivery.status in ("pending", "retrying") and delivery.attempts < delivery.attempt_limit and delivery.attempts:
        raise ApiProblem(409, f"delivery {delivery_id!r} is still being retried", "delivery_id")
    delivery.status, delivery.next_attempt_at = "pending", None
    delivery.attempt_limit = delivery.attempts + settings.webhook_max_attempts
    session.flush()
    events.send_after_commit(session, settings, [delivery.id])
    return delivery_out(delivery, webhook_repo.attempts_of(session, [delivery.id])[delivery.id])
