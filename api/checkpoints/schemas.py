from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class LayerWidth(BaseModel):
    kv_groups: int
    channels: int


class CheckpointOut(BaseModel):
    """A nested checkpoint. `sparsity` is the fraction of attention+MLP parameters removed;
    `parameter_count` counts the whole model (embeddings and LM head included, tied weights
    once); `bytes` is parameter_count × dtype size, the exact size of the weights in
    model.safetensors (its small JSON header not counted), known before materializing."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    job_id: str
    target_sparsity: float
    sparsity: float
    parameter_count: int
    bytes: int
    flops_per_token: int
    metrics: dict[str, float] = Field(default_factory=dict)
    layers: list[LayerWidth]
    sha256: str | None
    created_at: datetime


class CheckpointPage(BaseModel):
    data: list[CheckpointOut]
    has_more: bool
