"""Emitting webhook events where the service records what happened: the worker's job outcome and
checkpoint registration, and a cancelled queued job. Deliveries are inserted in the caller's
transaction (so an event exists exactly when what it reports was committed) and their delivery
tasks are sent once that transaction commits. A send that fails leaves the delivery `pending`;
`POST .../redeliver` sends it again."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from gisp_service.core.settings import Settings
from gisp_service.db.ids import new_id
from gisp_service.db.models import Checkpoint, WebhookDelivery
from gisp_service.db.repos import jobs as job_repo
from gisp_service.db.repos import webhooks as webhook_repo

TASK_NAME = "gisp.webhook.deliver"
JOB_EVENTS = {"succeeded": "job.succeeded", "failed": "job.failed", "cancelled": "job.cancelled"}
log = logging.getLogger("gisp.webhooks")


_SENDERS: dict[str, Any] = {}  # one Celery producer per broker URL, made on first use


def send(settings: Settings, delivery_id: str) -> None:
    if settings.broker not in _SENDERS:
        from gisp_service.core.queue import make_celery

        _SENDERS[settings.broker] = make_celery(settings)
    _SENDERS[settings.broker].send_task(TASK_NAME, args=[delivery_id], queue=settings.webhook_queue)


def emit(session: Session, settings: Settings, tenant_id: str, event_type: str, data: dict[str, Any]) -> list[str]:
    """One delivery per endpoint of the tenant subscribed to `event_type`; sent after the commit."""
    payload = {"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data}
    ids = []
    for endpoint in webhook_repo.subscribed(session, tenant_id, event_type):
        delivery = WebhookDelivery(
            id=new_id("msg"),
            endpoint_id=endpoint.id,
            tenant_id=tenant_id,
            event_type=event_type,
            payload=payload,
            status="pending",
            attempts=0,
            attempt_limit=settings.webhook_max_attempts,
        )
        webhook_repo.add(session, delivery)
        ids.append(delivery.id)
    if ids:
        send_after_commit(session, settings, ids)
    return ids


def send_after_commit(session: Session, settings: Settings, ids: list[str]) -> None:
    def _send(_session: Session) -> None:
        for delivery_id in ids:
            try:
                send(settings, delivery_id)
            except Exception:
                log.exception("could not enqueue webhook delivery %s; it stays pending", delivery_id)

    event.listen(session, "after_commit", _send, once=True)


def job_finished(session: Session, settings: Settings, job_id: str) -> None:
    """job.succeeded / job.failed / job.cancelled for a job whose outcome this transaction records."""
    from gisp_service.api.jobs.schemas import JobOut
    from gisp_service.api.jobs.service import out

    job = job_repo.get_any(session, job_id)
    if job is None or job.status not in JOB_EVENTS:
        return
    data = JobOut.model_validate(out(session, job)).model_dump(mode="json")
    emit(session, settings, job.tenant_id, JOB_EVENTS[job.status], data)


def checkpoint_created(session: Session, settings: Settings, checkpoint: Checkpoint) -> None:
    from gisp_service.api.checkpoints.schemas import CheckpointOut

    data = CheckpointOut.model_validate(checkpoint).model_dump(mode="json")
    emit(session, settings, checkpoint.tenant_id, "checkpoint.created", data)
