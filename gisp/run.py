"""One call from files to a trajectory: load the model and data, check them against the
objective, pick calibration and held-out examples, and prune."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gisp.config import PruneSettings
from gisp.data import Example, build_examples, inspect_dataset, read_records
from gisp.evaluation import heldout_metrics
from gisp.loading import LoadedModel, load_model
from gisp.objectives import get_objective
from gisp.objectives.base import pad_token_id
from gisp.pruner import PruneObserver, new_trajectory, prune
from gisp.trajectory import CheckpointRecord, Trajectory


@dataclass
class PreparedRun:
    loaded: LoadedModel
    calibration: list[Example]
    heldout: list[Example]
    data_sha256: str


def prepare(model: str, data: str | Path, settings: PruneSettings, revision: str | None = None) -> PreparedRun:
    """Validate the data for the objective (before the model is loaded), then load both."""
    objective = get_objective(settings.objective)
    kind, records = read_records(data)
    objective.check(kind)
    sha = inspect_dataset(data).sha256
    loaded = load_model(model, device=settings.device, dtype=settings.dtype, revision=revision)
    args = (records, objective.mode, settings.samples, settings.seq_len, settings.seed, settings.heldout)
    calibration, heldout = build_examples(loaded.tokenizer, *args)
    if kind == "choice" and objective.mode != "choice":
        # multiple-choice data is always measured by accuracy; same seed, so the same held-out items
        _, heldout = build_examples(loaded.tokenizer, records, "choice", *args[2:])
    return PreparedRun(loaded, calibration, heldout, sha)


class HeldoutObserver(PruneObserver):
    """Measures each checkpoint on the held-out examples; chains to another observer."""

    def __init__(self, heldout: list[Example], pad_id: int, inner: PruneObserver | None = None) -> None:
        self.heldout, self.pad_id, self.inner = heldout, pad_id, inner or PruneObserver()

    def should_stop(self) -> bool:
        return self.inner.should_stop()

    def on_checkpoint(self, record: CheckpointRecord, model) -> dict[str, float]:
        metrics = heldout_metrics(model, self.heldout, self.pad_id) if self.heldout else {}
        record.metrics = metrics
        return {**metrics, **self.inner.on_checkpoint(record, model)}

    def on_step(self, report, trajectory) -> None:
        self.inner.on_step(report, trajectory)


def run(
    model: str,
    data: str | Path,
    settings: PruneSettings,
    observer: PruneObserver | None = None,
    resume: Trajectory | None = None,
) -> tuple[Trajectory, PreparedRun]:
    """Prune `model` on `data`; continue `resume` instead of starting over when given."""
    prepared = prepare(model, data, settings, revision=resume.base_revision if resume else None)
    trajectory = resume or new_trajectory(prepared.loaded, settings, prepared.data_sha256)
    observer = HeldoutObserver(prepared.heldout, pad_token_id(prepared.loaded.tokenizer), observer)
    prune(prepared.loaded, prepared.calibration, settings, trajectory, observer)
    return trajectory, prepared
