from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobCreate(BaseModel):
    """A pruning job. Sparsity is the fraction of attention+MLP parameters removed (embeddings,
    norms and the LM head are not counted)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="hub id `org/name`, or the name of a model under a configured model root")
    dataset_id: str
    eval_dataset_id: str | None = None
    objective: str = "perplexity"
    targets: list[float] = [0.2, 0.4]
    steps: int = 16
    method: str = "gisp"
    samples: int = 64
    seq_len: int = 256
    seed: int = 0
    dtype: str = "float32"
    importance: str | None = Field(
        default=None, description="fisher | taylor; default: taylor for the margin objective, else fisher"
    )


class Progress(BaseModel):
    step: int
    total_steps: int
    sparsity: float
    loss: float | None
    eta_seconds: float | None


class JobError(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: str
    status: JobStatus
    model: str
    dataset_id: str
    eval_dataset_id: str | None
    objective: str
    targets: list[float]
    steps: int
    method: str
    samples: int
    seq_len: int
    seed: int
    dtype: str
    importance: str
    progress: Progress
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    checkpoint_count: int


class JobPage(BaseModel):
    data: list[JobOut]
    has_more: bool


class EventOut(BaseModel):
    seq: int
    type: Literal["queued", "started", "step", "checkpoint", "finished", "error", "cancelled"]
    created_at: datetime
    data: dict[str, Any]


class EventPage(BaseModel):
    data: list[EventOut]
    has_more: bool
