"""Job request and response models. The pruning settings are not written here: each one's type,
default, bounds, choices and description come from the engine's `PruneSettings` metadata, so the
OpenAPI document, FastAPI's validation and the engine agree by construction."""

from __future__ import annotations

import types
from datetime import datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model

from gisp.config import SettingSpec, setting_specs
from gisp_service.api.datasets.schemas import ColumnMapping
from gisp_service.core.model_refs import HUB_ID

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
EventType = Literal[
    "queued", "started", "step", "search", "reconstruction", "warning", "checkpoint", "finished", "error", "cancelled"
]
Phase = Literal["pruning", "reconstruction"]
JOB_SETTINGS: list[SettingSpec] = [spec for spec in setting_specs() if spec.service]


def _item_type(spec: SettingSpec, item: Any) -> Any:
    """One value's type: an enum of the registry's names, or the number with its bounds."""
    if spec.choices is not None:
        return Literal[tuple(spec.choices())]
    pairs = (("ge", spec.ge), ("gt", spec.gt), ("lt", spec.lt), ("le", spec.le))
    bounds = {k: (int(v) if item is int else v) for k, v in pairs if v is not None}
    return Annotated[item, Field(**bounds)] if bounds else item


def _request_field(spec: SettingSpec) -> tuple[Any, Any]:
    origin, args = get_origin(spec.type), get_args(spec.type)
    extra: dict[str, Any] = {}
    if origin is list:
        annotation: Any = list[_item_type(spec, args[0])]
        extra["min_length"] = spec.min_items
        extra["max_length"] = spec.max_items
    elif origin in (Union, types.UnionType):  # `str | None`: optional, None means "the engine decides"
        annotation = _item_type(spec, next(a for a in args if a is not type(None))) | None
    else:
        annotation = _item_type(spec, spec.type)
    default = ... if spec.required else spec.default
    return annotation, Field(default, description=spec.help, **extra)


def _response_field(spec: SettingSpec) -> tuple[Any, Any]:
    """As stored on the job: resolved (an importance of None was replaced by the default)."""
    annotation = spec.type
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return annotation, Field(description=spec.help)


class HubDataset(BaseModel):
    """Calibration rows streamed from a Hugging Face hub dataset by the worker when the job
    starts (the first `rows` rows of the split), instead of an upload."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"hub": "roneneldan/TinyStories", "split": "train", "rows": 2000, "columns": {}}]
        },
    )

    hub: str = Field(pattern=HUB_ID.pattern, description="the dataset's hub id, `org/name`")
    config: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="its configuration")
    split: str = Field("train", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    rows: int = Field(1000, ge=1, description="rows to stream (at most GISP_HUB_MAX_ROWS)")
    columns: ColumnMapping = Field(
        default_factory=ColumnMapping, description="which columns hold the records' parts (default: a `text` column)"
    )
    revision: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$", description="a commit or tag")


class JobRequest(BaseModel):
    """A pruning job. Sparsity is the fraction of attention+MLP parameters removed (embeddings,
    norms and the LM head are not counted)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"model": "stories260K", "dataset_id": "ds_0193c2a4f1b2a7c3d4e5", "targets": [0.2, 0.4]}]
        },
    )

    model: str = Field(description="hub id `org/name`, or the name of a model under a configured model root")
    dataset_id: str | None = Field(None, description="the calibration dataset (an upload); or give `hub_dataset`")
    hub_dataset: HubDataset | None = Field(
        None, description="calibration rows from a hub dataset, instead of an upload"
    )
    eval_dataset_id: str | None = Field(
        None, description="a separate dataset the checkpoints' metrics are measured on (default: held-out calibration)"
    )


JobCreate = create_model(
    "JobCreate",
    __base__=JobRequest,
    __module__=__name__,
    **{spec.name: _request_field(spec) for spec in JOB_SETTINGS},  # type: ignore[call-overload]
)


class Progress(BaseModel):
    """The pruning steps, then (for a job with a `reconstruct` setting) the reconstruction phase:
    `phase_progress` is the fraction of that phase done (checkpoints × layers)."""

    step: int
    total_steps: int
    sparsity: float
    loss: float | None
    eta_seconds: float | None
    phase: Phase = "pruning"
    phase_progress: float | None = None


class JobError(BaseModel):
    code: str
    message: str


class JobState(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "job_0193c2a4f1b2a7c3d4e5",
                    "status": "running",
                    "model": "stories260K",
                    "dataset_id": "ds_0193c2a4f1b2a7c3d4e5",
                    "hub_dataset": None,
                    "eval_dataset_id": None,
                    "targets": [0.2, 0.4],
                    "objective": "perplexity",
                    "method": "gisp",
                    "importance": "fisher",
                    "progress": {
                        "step": 3,
                        "total_steps": 16,
                        "sparsity": 0.075,
                        "loss": 1.83,
                        "eta_seconds": 12.5,
                        "phase": "pruning",
                        "phase_progress": None,
                    },
                    "error": None,
                    "created_at": "2026-12-01T10:00:00Z",
                    "started_at": "2026-12-01T10:00:01Z",
                    "finished_at": None,
                    "checkpoint_count": 0,
                }
            ]
        }
    )

    id: str
    status: JobStatus
    model: str
    dataset_id: str | None
    hub_dataset: HubDataset | None
    eval_dataset_id: str | None
    progress: Progress
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    checkpoint_count: int


JobOut = create_model(
    "JobOut",
    __base__=JobState,
    __module__=__name__,
    **{spec.name: _response_field(spec) for spec in JOB_SETTINGS},  # type: ignore[call-overload]
)


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    type: EventType
    created_at: datetime
    data: dict[str, Any]
