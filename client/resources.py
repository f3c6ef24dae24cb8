"""Shapes of the API's JSON resources. TypedDicts, so unknown extra fields pass through;
tests/client/test_contract.py checks them against the committed openapi.json."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class Dataset(TypedDict):
    id: str
    name: str
    format: str
    kind: str
    records: int
    bytes: int
    sha256: str
    canonical_sha256: str
    columns: dict[str, str]
    created_at: str


class Progress(TypedDict, total=False):
    step: int
    total_steps: int
    sparsity: float
    loss: float | None
    eta_seconds: float | None
    phase: str  # "pruning", then "reconstruction"
    phase_progress: float | None  # fraction of the reconstruction phase done


class JobError(TypedDict):
    code: str
    message: str


class Job(TypedDict):
    id: str
    status: JobStatus
    model: str
    dataset_id: str | None
    hub_dataset: dict[str, Any] | None
    eval_dataset_id: str | None
    # the pruning settings, as the server resolved and stored them
    targets: list[float]
    objective: str
    method: str
    steps: int
    samples: int
    seq_len: int
    seed: int
    importance: str
    normalization: str
    protect_layers: list[int]
    min_kv_groups: int
    batch_size: int
    dtype: str
    heldout: int
    gradient_checkpointing: bool
    reconstruct: str
    reconstruct_lambda: float
    reconstruct_samples: int
    reconstruct_inputs: bool
    reconstruct_residual: float
    reconstruct_target: str
    reconstruct_in_loop: bool
    tyr_levels: int
    tyr_step: float
    tyr_rounds: int
    tyr_population: int
    tyr_offspring: int
    tyr_generations: int
    tyr_stage_samples: list[int]
    tyr_stage_keep: list[int]
    tyr_top_k: int
    tyr_update_rounds: int
    tyr_damp: float
    tyr_anchor: bool
    tyr_refit: str
    tyr_finalists: int
    tyr_start: str
    progress: Progress
    error: JobError | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    checkpoint_count: int


class Event(TypedDict):
    seq: int
    type: str
    created_at: str
    data: dict[str, Any]


class Layer(TypedDict):
    kv_groups: int
    channels: int


class Checkpoint(TypedDict):
    id: str
    job_id: str
    target_sparsity: float
    sparsity: float
    parameter_count: int
    bytes: int
    flops_per_token: int
    metrics: dict[str, float]  # of the weights downloaded (refit ones when reconstructed)
    reconstruction: str | None
    unreconstructed_metrics: dict[str, float]
    reconstruction_rejected: str | None  # why the guard kept the weights as cut, when it did
    layers: list[Layer]
    sha256: str | None  # of the tar, once built
    gguf_sha256: str | None  # of the GGUF file, once built
    created_at: str


class CheckpointList(list[Checkpoint]):
    """A job's checkpoints (a plain list), and whether the family is nested: every checkpoint a
    subnetwork of each less sparse one (False for a `tyr` job, whose targets are searched apart;
    a client choosing among them by budget must then not assume one contains the next)."""

    def __init__(self, items: list[Checkpoint], nested: bool) -> None:
        super().__init__(items)
        self.nested = nested
