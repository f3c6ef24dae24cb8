"""SQLAlchemy models. The database is the source of truth for jobs; the queue carries ids only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex; the key itself is never stored
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to tell keys apart
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)  # None: the key does not expire


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    format: Mapped[str] = mapped_column(String(16))  # of the upload as sent: txt, jsonl, csv, parquet, zip...
    kind: Mapped[str] = mapped_column(String(16))
    records: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # of the upload as sent, kept in the store
    # the engine-readable file jobs read (txt or canonical jsonl); the upload itself when it is one
    canonical_sha256: Mapped[str] = mapped_column(String(64))
    canonical_format: Mapped[str] = mapped_column(String(16))
    columns: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the column mapping given at upload
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)  # soft delete: jobs keep their reference


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),
        Index("ix_jobs_tenant_status", "tenant_id", "status"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    model: Mapped[str] = mapped_column(String(300))
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), default=None)
    # instead of an upload: {"hub", "config", "split", "rows", "columns", "revision"}, streamed by the worker
    hub_dataset: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    eval_dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), default=None)
    # the engine's PruneSettings.to_dict() (without the worker's device), built once at submit time
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    # progress, written by the worker every step
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer)
    sparsity: Mapped[float] = mapped_column(Float, default=0.0)
    loss: Mapped[float | None] = mapped_column(Float, default=None)
    eta_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    # "pruning", then "reconstruction" (with the fraction of it done) when the job refits checkpoints
    phase: Mapped[str] = mapped_column(String(20), default="pruning")
    phase_progress: Mapped[float | None] = mapped_column(Float, default=None)
    # liveness and ownership: a claim sets worker_id and lease; heartbeats keep it alive
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    worker_id: Mapped[str | None] = mapped_column(String(200), default=None)
    lease: Mapped[str | None] = mapped_column(String(40), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error_code: Mapped[str | None] = mapped_column(String(60), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    event_seq: Mapped[int] = mapped_column(Integer, default=0)  # last event number, bumped atomically
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    duration_seconds: Mapped[float | None] = mapped_column(Float, default=None)  # step events, for /metrics
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StepDurationBucket(Base):
    """How many pruning steps took up to `le` seconds (and more than the bound below), with
    their total seconds: kept as steps are written, so /metrics reads a dozen rows instead of
    every step event ever written."""

    __tablename__ = "step_duration_buckets"
    le: Mapped[str] = mapped_column(String(16), primary_key=True)  # Prometheus' label: "0.5", "+Inf"
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "target_sparsity", name="uq_checkpoints_job_target"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    target_sparsity: Mapped[float] = mapped_column(Float)
    sparsity: Mapped[float] = mapped_column(Float)
    parameter_count: Mapped[int] = mapped_column(BigInteger)
    prunable_parameter_count: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    flops_per_token: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # of the weights downloaded
    # the reconstruction stage: its variant (None: the weights as cut), the sha256 of its refit
    # tensors (stored beside the job's trajectory) and the metrics before it
    reconstruction: Mapped[str | None] = mapped_column(String(40), default=None)
    reconstruction_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    unreconstructed_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # set when the stage's guard kept the weights as cut: the refit raised the held-back loss
    reconstruction_rejected: Mapped[str | None] = mapped_column(Text, default=None)
    layers: Mapped[list[Any]] = mapped_column(JSON)  # [{"kv_groups", "channels"}] per layer
    structure: Mapped[dict[str, Any]] = mapped_column(JSON)  # kept indices, enough to rebuild it
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)  # of the tar, once materialized
    artifact_path: Mapped[str | None] = mapped_column(String(500), default=None)
    # the second artifact: the checkpoint as a GGUF file for llama.cpp, built on its first download
    gguf_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    gguf_path: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(Base):
    """A tenant's endpoint and the events it wants. The secret signs deliveries (Standard
    Webhooks), so it is stored as is; the API shows it once, at creation."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[Any]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookDelivery(Base):
    """One event for one endpoint; its id is the `webhook-id` every attempt carries."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, retrying, succeeded, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempt_limit: Mapped[int] = mapped_column(Integer)  # a redelivery raises it by the retry limit
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt", name="uq_webhook_attempts_delivery_attempt"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)  # None: no HTTP answer
    error: Mapped[str | None] = mapped_column(Text, default=None)
    latency_seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
