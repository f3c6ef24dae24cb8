"""Per-key rate limits and per-tenant quotas, each refused with 429, `Retry-After` and problem+json.

Rates are GCRA token buckets from pyrate-limiter, one per (action, API key): in Redis when the
broker is Redis (production: every API process shares the same buckets), otherwise in this
process (embedded: one API process). A bucket that cannot be reached lets the request through
(logged): a Redis hiccup must not stop the service. Quotas are counted in the database: the
tenant's queued + running jobs, and the bytes of its stored uploads."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from pyrate_limiter import GCRA, Duration, InMemoryStateStore, Rate, RateItem, RedisStateStore, StateBucket

from gisp_service.api.deps import TenantId
from gisp_service.api.errors import ApiProblem
from gisp_service.core.settings import Settings

log = logging.getLogger("gisp.api")
MAX_BUCKETS = 10_000


def too_many(detail: str, field: str, retry_after: float) -> ApiProblem:
    seconds = max(1, math.ceil(retry_after))
    return ApiProblem(429, f"{detail}; retry after {seconds} s", field, headers={"Retry-After": str(seconds)})


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.per_minute = {"jobs": settings.rate_jobs_per_minute, "uploads": settings.rate_uploads_per_minute}
        self.redis = None
        if settings.broker.startswith(("redis://", "rediss://")):
            import redis

            self.redis = redis.Redis.from_url(settings.broker, socket_timeout=1, socket_connect_timeout=1)
        self.buckets: dict[tuple[str, str], StateBucket] = {}

    def _bucket(self, action: str, key: str) -> StateBucket:
        bucket = self.buckets.get((action, key))
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self.buckets.clear()
            store = (
                RedisStateStore(self.redis, key=f"gisp:rate:{action}:{key}", ttl_ms=2 * Duration.MINUTE)
                if self.redis is not None
                else InMemoryStateStore()
            )
            rate = Rate(self.per_minute[action], Duration.MINUTE)
            bucket = self.buckets[(action, key)] = StateBucket([rate], algorithm=GCRA(), store=store)
        return bucket

    def check(self, action: str, key: str) -> None:
        """Take one token for `key`, or raise 429 saying when the next one is due."""
        limit = self.per_minute[action]
        if limit <= 0:
            return
        bucket = self._bucket(action, key)
        try:
            decision = bucket.put_decision(RateItem(action, bucket.now()))
        except Exception as exc:  # noqa: BLE001  (the limiter's store is down: let the request through)
            log.warning("rate limit store unavailable (%s); not limiting", exc)
            return
        if not decision.allowed:  # type: ignore[union-attr]
            wait = (decision.retry_after_ms or 60_000) / 1000  # type: ignore[union-attr]
            name = "GISP_RATE_JOBS_PER_MINUTE" if action == "jobs" else "GISP_RATE_UPLOADS_PER_MINUTE"
            raise too_many(f"more than {limit} {action} a minute for this API key ({name})", "Authorization", wait)


def limited(action: str) -> Callable[..., None]:
    """A route dependency taking one `action` token for the request's key (after authentication)."""

    def dependency(request: Request, _tenant: TenantId) -> None:
        request.app.state.limits.check(action, request.state.key_id)

    return dependency


SubmitRate = Annotated[None, Depends(limited("jobs"))]
UploadRate = Annotated[None, Depends(limited("uploads"))]
