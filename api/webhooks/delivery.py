"""Sending one delivery: the Celery task `gisp.webhook.deliver` (queue GISP_WEBHOOK_QUEUE, run by a
worker with a threads pool, `gisp serve` starts one) signs the payload per Standard Webhooks
(`webhook-id` = the delivery id, the same on every attempt; `webhook-timestamp`;
`webhook-signature`), POSTs it, and records the attempt (status code, error, latency). A non-2xx
answer, a timeout or a refused connection is retried after retry_base × 2^(attempt-1) seconds
until the delivery's attempt limit; an address the SSRF check refuses is not retried."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import httpx
from celery import shared_task
from standardwebhooks import Webhook

from gisp_service.api.webhooks import urls
from gisp_service.api.webhooks.events import TASK_NAME
from gisp_service.core.runtime import Runtime
from gisp_service.core.settings import get_settings
from gisp_service.db.repos import webhooks as webhook_repo
from gisp_service.db.session import transaction

log = logging.getLogger("gisp.webhooks")
USER_AGENT = "gisp-service-webhooks/1"


@lru_cache
def _runtime() -> Runtime:
    return Runtime.build(get_settings())


def signed_headers(secret: str, msg_id: str, body: str, now: datetime) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def deliver_once(rt: Runtime, delivery_id: str) -> float | None:
    """One attempt; returns the seconds until the next one, or None when the delivery is done
    (succeeded, failed for good, or nothing to do)."""
    import json

    settings = rt.settings
    with transaction(rt.sessions) as session:
        delivery = webhook_repo.delivery_any(session, delivery_id)
        if delivery is None or delivery.status in ("succeeded", "failed"):
            return None
        endpoint = webhook_repo.endpoint_any(session, delivery.endpoint_id)
        url, secret = (endpoint.url, endpoint.secret) if endpoint is not None else ("", "")
        deleted = endpoint is None or endpoint.deleted_at is not None
        body = json.dumps(delivery.payload, separators=(",", ":"))
    status_code, error, retry = None, None, True
    started = time.perf_counter()
    if deleted:
        error, retry = "the endpoint was deleted", False
    else:
        try:
            urls.check(url, settings.webhook_allow_private, resolve_required=True)
        except urls.RefusedURL as exc:
            error, retry = f"refused: {exc}", False
    if error is None:
        headers = signed_headers(secret, delivery_id, body, datetime.now(UTC))
        try:
            response = httpx.post(url, content=body.encode(), headers=headers, timeout=settings.webhook_timeout)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
    latency = time.perf_counter() - started
    with transaction(rt.sessions) as session:
        delivery = webhook_repo.delivery_any(session, delivery_id, lock=True)
        assert delivery is not None
        attempt = delivery.attempts + 1
        if error is None:
            webhook_repo.record_attempt(session, delivery, status_code, None, latency, "succeeded")
            return None
        if not retry or attempt >= delivery.attempt_limit:
            webhook_repo.record_attempt(session, delivery, status_code, error, latency, "failed")
            log.warning("webhook delivery %s failed after %d attempts: %s", delivery_id, attempt, error)
            return None
        delay = settings.webhook_retry_base * 2 ** (attempt - 1)
        next_at = datetime.now(UTC) + timedelta(seconds=delay)
        webhook_repo.record_attempt(session, delivery, status_code, error, latency, "retrying", next_at)
        return delay


@shared_task(name=TASK_NAME, bind=True, acks_late=True, ignore_result=True)
def deliver(self, delivery_id: str) -> str:
    delay = deliver_once(_runtime(), delivery_id)
    if delay is None:
        return "done"
    raise self.retry(countdown=delay, max_retries=None)
