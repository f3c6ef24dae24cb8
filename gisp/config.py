"""Settings of a pruning run, validated up front so bad input fails before any model is loaded."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from gisp.errors import ConfigError
from gisp.importance import estimator_names
from gisp.loading import DTYPES
from gisp.methods import method_names
from gisp.normalization import NORMALIZATIONS
from gisp.objectives import objective_names


@dataclass
class PruneSettings:
    targets: list[float]
    objective: str = "perplexity"
    method: str = "gisp"
    steps: int = 16
    samples: int = 64
    seq_len: int = 256
    seed: int = 0
    importance: str | None = None  # None: default_importance(objective)
    normalization: str = "param"
    protect_layers: list[int] = field(default_factory=list)
    batch_size: int = 8
    device: str = "cpu"
    dtype: str = "float32"
    heldout: int = 16  # samples kept out of calibration, for the checkpoints' held-out metrics
    gradient_checkpointing: bool = False  # recompute activations in scoring passes (long sequences)

    def __post_init__(self) -> None:
        if self.importance is None:
            self.importance = default_importance(self.objective)
        self.targets = sorted({round(float(t), 6) for t in self.targets})
        self.validate()

    def validate(self) -> None:
        if not self.targets:
            raise ConfigError("at least one target is required", field="targets")
        for target in self.targets:
            if not 0.0 < target < 1.0:
                raise ConfigError(f"target {target:g} is outside (0, 1)", field="targets")
        _choice("objective", self.objective, objective_names())
        _choice("method", self.method, method_names())
        _choice("importance", self.importance, estimator_names())
        _choice("normalization", self.normalization, sorted(NORMALIZATIONS))
        _choice("dtype", self.dtype, sorted(DTYPES))
        for name in ("steps", "samples", "seq_len", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}", field=name)
        if self.seq_len < 2:
            raise ConfigError("seq_len must be at least 2", field="seq_len")
        if self.heldout < 0:
            raise ConfigError("heldout must not be negative", field="heldout")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} requested but CUDA is not available", field="device")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ConfigError(f"device must be cpu, cuda or cuda:N, not {self.device!r}", field="device")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_importance(objective: str) -> str:
    """`fisher` won our quality benchmark for perplexity-type objectives (docs/benchmarks.md);
    for `margin`, whose score is signed by design (∂L+ − ∂L−), the paper's `taylor` did as well
    or better, so it stays the default there."""
    return "taylor" if objective == "margin" else "fisher"


def _choice(name: str, value: str, allowed: list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}", field=name)
