"""The pruning trajectory: everything needed, with the base model, to rebuild any checkpoint.

It is also the resumable state of a run: `completed_steps` and `structure` say where the run
stands, so a run that died continues from its last completed step.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gisp.errors import ConfigError
from gisp.structure import ArchSpec, Structure, is_nested

FORMAT_VERSION = 1


@dataclass
class CheckpointRecord:
    target: float
    sparsity: float
    parameter_count: int  # whole model
    prunable_parameter_count: int  # kept attention+MLP parameters
    flops_per_token: int
    step: int  # the schedule step during which the target was crossed
    loss: float  # calibration objective of the model the step started from
    structure: Structure
    metrics: dict[str, float] = field(default_factory=dict)  # of the weights a user downloads
    # the reconstruction stage: which variant re-fitted the weights (None: not done, or `none`),
    # the sha256 of its tensors, and the metrics the checkpoint had before it
    reconstruction: str | None = None
    reconstruction_sha256: str | None = None
    unreconstructed_metrics: dict[str, float] = field(default_factory=dict)
    # why the stage's guard kept the weights as cut (reconstruction then stays None); None otherwise
    reconstruction_rejected: str | None = None

    @classmethod
    def of(cls, structure: Structure, spec: ArchSpec, target: float, step: int, loss: float) -> CheckpointRecord:
        """The record of `structure`, its counts computed from the architecture."""
        return cls(
            target=target,
            sparsity=structure.sparsity(spec),
            parameter_count=structure.total_params(spec),
            prunable_parameter_count=structure.kept_params(spec),
            flops_per_token=structure.flops_per_token(spec),
            step=step,
            loss=loss,
            structure=structure,
        )

    @property
    def name(self) -> str:
        return f"sparsity-{self.target:.2f}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["structure"] = self.structure.to_dict()
        data["kept_kv_groups"], data["kept_channels"] = self.structure.layer_widths()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointRecord:
        data = {k: v for k, v in data.items() if k not in ("kept_kv_groups", "kept_channels")}
        data["structure"] = Structure.from_dict(data["structure"])
        return cls(**data)


@dataclass
class Trajectory:
    base_model: str
    base_revision: str | None
    arch: ArchSpec
    base_config: dict[str, Any]
    data_sha256: str
    objective: str
    settings: dict[str, Any]
    total_steps: int
    completed_steps: int = 0
    structure: Structure | None = None  # after `completed_steps`
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    # the checkpoints' metrics measured on the dense model before the first step: the reference point
    dense_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.completed_steps >= self.total_steps

    @property
    def nested(self) -> bool:
        """Whether each checkpoint's structure is a subnetwork of the one below it in sparsity (true
        of the ranking methods; a search-based method's targets are searched independently)."""
        return is_nested(r.structure for r in sorted(self.checkpoints, key=lambda r: r.target))

    def checkpoint(self, target: float) -> CheckpointRecord:
        for record in self.checkpoints:
            if abs(record.target - target) < 1e-9:
                return record
        have = ", ".join(f"{r.target:g}" for r in self.checkpoints) or "none"
        raise ConfigError(f"the trajectory has no checkpoint for target {target:g} (it has: {have})", field="target")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "base_model": self.base_model,
            "base_revision": self.base_revision,
            "arch": self.arch.to_dict(),
            "base_config": self.base_config,
            "data_sha256": self.data_sha256,
            "objective": self.objective,
            "settings": self.settings,
            "total_steps": self.total_steps,
            "completed_steps": self.completed_steps,
            "elapsed_seconds": self.elapsed_seconds,
            "structure": self.structure.to_dict() if self.structure else None,
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            "dense_metrics": self.dense_metrics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        if data.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"unsupported trajectory format_version {data.get('format_version')!r}", field="trajectory"
            )
        return cls(
            base_model=data["base_model"],
            base_revision=data.get("base_revision"),
            arch=ArchSpec.from_dict(data["arch"]),
            base_config=data["base_config"],
            data_sha256=data["data_sha256"],
            objective=data["objective"],
            settings=data["settings"],
            total_steps=data["total_steps"],
            completed_steps=data.get("completed_steps", 0),
            elapsed_seconds=data.get("elapsed_seconds", 0.0),
            dense_metrics=dict(data.get("dense_metrics", {})),
            structure=Structure.from_dict(data["structure"]) if data.get("structure") else None,
            checkpoints=[CheckpointRecord.from_dict(c) for c in data.get("checkpoints", [])],
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file, fsync, rename) so a crash never leaves half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        return cls.from_dict(json.loads(Path(path).read_text()))
