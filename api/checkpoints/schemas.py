from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gisp_service.api.schemas import Page


class LayerWidth(BaseModel):
    kv_groups: int
    channels: int


class CheckpointOut(BaseModel):
    """A registered checkpoint. `sparsity` is the fraction of attention+MLP parameters removed;
    `parameter_count` counts the whole model (embeddings and LM head included, tied weights
    once); `bytes` is parameter_count × dtype size, the exact size of the weights in
    model.safetensors (its small JSON header not counted), known before materializing. `sha256` is
    the tar's and `gguf_sha256` the GGUF file's, each once that artifact has been built. `metrics`
    are measured on the weights downloaded: for a job with a `reconstruct` setting, the refit ones
    (`reconstruction` names the variant); `unreconstructed_metrics` are the same checkpoint's before
    the refit, so the difference is what the stage bought. `reconstruction_rejected` says why a
    checkpoint of such a job has no refit: the stage's guard measured that the refit raised the
    objective's loss on held-back calibration sequences, so the weights as cut were kept."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "ckpt_0193c2a4f1b2a7c3d4e5",
                    "job_id": "job_0193c2a4f1b2a7c3d4e5",
                    "target_sparsity": 0.4,
                    "sparsity": 0.4002,
                    "parameter_count": 176832,
                    "bytes": 707328,
                    "flops_per_token": 418816,
                    "metrics": {"perplexity": 9.6},
                    "reconstruction": "lstsq-select-anchored",
                    "unreconstructed_metrics": {"perplexity": 14.2},
                    "layers": [{"kv_groups": 3, "channels": 101}],
                    "sha256": None,
                    "gguf_sha256": None,
                    "created_at": "2026-12-01T10:01:00Z",
                }
            ]
        },
    )

    id: str
    job_id: str
    target_sparsity: float
    sparsity: float
    parameter_count: int
    bytes: int
    flops_per_token: int
    metrics: dict[str, float] = Field(default_factory=dict)
    reconstruction: str | None = None
    unreconstructed_metrics: dict[str, float] = Field(default_factory=dict)
    reconstruction_rejected: str | None = None
    layers: list[LayerWidth]
    sha256: str | None
    gguf_sha256: str | None
    created_at: datetime


class CheckpointPage(Page[CheckpointOut]):
    """A page of a job's checkpoints, by target sparsity."""

    nested: bool = Field(
        description="whether every checkpoint of the job registered so far (all pages) is a subnetwork of each "
        "less sparse one: true of every ranking method by construction; "
        "method `tyr` searches each target apart, so its checkpoints usually are not"
    )
