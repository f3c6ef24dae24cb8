from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gisp_service.api.webhooks.urls import MAX_URL

WebhookEvent = Literal["job.succeeded", "job.failed", "job.cancelled", "checkpoint.created"]
DeliveryStatus = Literal["pending", "retrying", "succeeded", "failed"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"url": "https://ci.example.com/hooks/gisp", "events": ["job.succeeded"]}]},
    )

    url: str = Field(min_length=1, max_length=MAX_URL, description="an http(s) URL the service POSTs events to")
    events: list[WebhookEvent] = Field(min_length=1, description="the events to deliver")


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    events: list[WebhookEvent]
    created_at: datetime


class WebhookCreated(WebhookOut):
    """The endpoint and its signing secret, shown only in this answer."""

    secret: str = Field(
        description="`whsec_` + base64 key: verify each delivery's `webhook-signature` with it (Standard Webhooks)"
    )


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    status_code: int | None = Field(description="the receiver's HTTP status; null when no answer came")
    error: str | None
    latency_seconds: float
    created_at: datetime


class DeliveryOut(BaseModel):
    """One event for the endpoint; `id` is the `webhook-id` header of each of its attempts."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    event_type: WebhookEvent
    status: DeliveryStatus
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None
    payload: dict[str, Any] = Field(description="the body sent: {type, timestamp, data}")
    created_at: datetime
