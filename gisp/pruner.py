"""The iterative loop: rank, remove up to the step's goal (recording every target crossed),
slice the model, repeat on the smaller model. One loop serves every method."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from gisp.config import PruneSettings
from gisp.data import Example
from gisp.errors import ConfigError, PruningStopped
from gisp.importance.checkpointing import gradient_checkpointing
from gisp.loading import LoadedModel
from gisp.masking import structure_masks, unit_masks
from gisp.methods import MethodContext, PruningMethod, get_method
from gisp.methods.search import SearchContext, SearchProgress
from gisp.objectives import Objective, get_objective
from gisp.objectives.base import pad_token_id
from gisp.reconstruction.tensors import reconstruction_file, tensors_bytes, write_atomic
from gisp.schedule import defer_below_floor, linear_goal, nearest_count
from gisp.stopping import check_stop, checked
from gisp.structure import KINDS, Structure, Unit
from gisp.trajectory import CheckpointRecord, Trajectory

if TYPE_CHECKING:  # the stage imports the pruner
    from gisp.reconstruction.finalists import FinalistJudge

Measure = Callable[[torch.nn.Module], dict[str, float]]  # a checkpoint's metrics, from the model computing it


class StepRefit(Protocol):
    """`reconstruct_in_loop`'s refit between steps (gisp.reconstruction.in_loop.StepRefit)."""

    def refit(self, model: torch.nn.Module, structure: Structure) -> None: ...

    def measure_cut(self, structure: Structure, measure: Measure) -> dict[str, float]: ...


@dataclass
class StepReport:
    step: int
    total_steps: int
    sparsity: float  # achieved after this step
    loss: float | None  # calibration objective before this step's removal
    seconds: float
    removed_units: int


class PruneObserver:
    """Hooks a caller can override; the defaults do nothing."""

    def should_stop(self) -> bool:
        """Asked before every step and between the items of every long loop inside one (records,
        calibration batches, checkpoints measured); True stops the run (PruningStopped). Keep it cheap."""
        return False

    def on_checkpoint(self, record: CheckpointRecord) -> None:
        """Called once per target crossed, with the record complete (its held-out metrics included)."""

    def on_step(self, report: StepReport, trajectory: Trajectory) -> None:
        """Called after every step with the state to persist for a resume."""

    def on_search(self, progress: SearchProgress) -> None:
        """Progress inside a search-based method's target: ladder layers built, search generations
        with the best fitness so far."""

    def on_reconstruction_progress(self, record: CheckpointRecord, layers: int, total: int) -> None:
        """Called after each layer the reconstruction of `record` has finished."""

    def on_warning(self, message: str) -> None:
        """A condition the user should know of that does not stop the run (e.g. too few tokens)."""

    def on_reconstructed(self, record: CheckpointRecord, tensors: bytes, trajectory: Trajectory) -> None:
        """Called when `record` is reconstructed, before `on_checkpoint`: `tensors` are its refit
        output projections as safetensors bytes (sha256 `record.reconstruction_sha256`); store them
        where `export_checkpoint(..., tensors=...)` will find them."""

    def on_trajectory(self, trajectory: Trajectory) -> None:
        """Persist the trajectory: called when a checkpoint is reconstructed, before `on_checkpoint`
        (a resume skips the checkpoints it records as reconstructed, and registers them again)."""


def new_trajectory(loaded: LoadedModel, settings: PruneSettings, data_sha256: str) -> Trajectory:
    return Trajectory(
        base_model=loaded.source,
        base_revision=loaded.revision,
        arch=loaded.adapter.spec,
        base_config=json.loads(loaded.model.config.to_json_string(use_diff=False)),
        data_sha256=data_sha256,
        objective=settings.objective,
        settings=settings.to_dict(),
        total_steps=settings.total_steps,
    )


def _check_reachable(settings: PruneSettings, loaded: LoadedModel) -> None:
    spec = loaded.adapter.spec
    for layer in settings.protect_layers:
        if not 0 <= layer < spec.num_layers:
            raise ConfigError(
                f"protected layer {layer} does not exist (the model has {spec.num_layers})", field="protect_layers"
            )
    protected = len(set(settings.protect_layers)) * sum(spec.units(k) * spec.unit_params(k) for k in KINDS)
    reachable = 1.0 - protected / spec.prunable_params
    if max(settings.targets) > reachable + 1e-9:
        raise ConfigError(
            f"target {max(settings.targets):g} is unreachable: protected layers cap sparsity at {reachable:.3f}",
            field="targets",
        )


def prune(
    loaded: LoadedModel,
    examples: list[Example],
    settings: PruneSettings,
    trajectory: Trajectory,
    observer: PruneObserver | None = None,
    measure: Measure | None = None,
    register: bool = True,
    tensors_dir: str | Path | None = None,
    state_dir: str | Path | None = None,
    step_refit: StepRefit | None = None,
    judge: FinalistJudge | None = None,
) -> Trajectory:
    """Run (or resume) the schedule on `loaded.model`, which is sliced in place as it goes.

    `measure(model)` gives each checkpoint's metrics while the model computes exactly that
    checkpoint's subnetwork; the observer is then told of the finished record, unless `register`
    is False (a reconstruction phase follows and registers it with its final weights).
    `state_dir` is the run's folder (where its trajectory is kept, the same on a resume): a
    search-based method keeps there what lets a resume continue inside a target.
    `step_refit` (reconstruct_in_loop) refits the sliced model after every step but the last, and
    checkpoints are then measured through it with the weights as cut. `judge` (a search-based
    method whose structures the stage refits) is the stage's verdict a search may choose by."""
    observer = observer or PruneObserver()
    _check_reachable(settings, loaded)
    model, adapter, spec = loaded.model, loaded.adapter, loaded.adapter.spec
    method, objective = get_method(settings.method), get_objective(settings.objective)
    device = next(model.parameters()).device
    batches = objective.batches(examples, settings.batch_size, pad_token_id(loaded.tokenizer))
    batches = checked(batches, observer.should_stop, "a step's scoring")  # type: ignore[assignment]
    if method.searches:
        return _search_targets(
            loaded,
            method,
            objective,
            batches,
            settings,
            trajectory,
            observer,
            measure,
            tensors_dir,
            state_dir,
            register,
            judge,
        )
    structure = trajectory.structure or Structure.full(spec)
    if trajectory.structure is not None:
        adapter.slice_model(model, Structure.full(spec), structure)
        if step_refit is not None and trajectory.completed_steps < trajectory.total_steps:
            step_refit.refit(model, structure)  # the state the interrupted run had after its last step
    protected = set(settings.protect_layers)
    recorded = {round(c.target, 6) for c in trajectory.checkpoints}
    total = spec.prunable_params

    for step in range(trajectory.completed_steps + 1, trajectory.total_steps + 1):
        if observer.should_stop():
            raise PruningStopped(f"stopped before step {step} of {trajectory.total_steps}")
        started = time.perf_counter()
        candidates = [
            Unit(layer, kind, index)
            for kind in KINDS
            for layer, kept in enumerate(structure.kept(kind))
            if layer not in protected
            for index in kept
        ]
        with gradient_checkpointing(model, settings.gradient_checkpointing):
            ranking = method.rank(
                MethodContext(
                    model,
                    adapter,
                    objective,
                    batches,
                    device,
                    structure,
                    candidates,
                    settings.importance,
                    settings.normalization,
                    settings.seed,
                    step,
                )
            )
        order = defer_below_floor(ranking.order, structure, settings.min_kv_groups)
        sizes = [spec.unit_params(u.kind) for u in order]
        removed_before = total - structure.kept_params(spec)
        goal = linear_goal(max(settings.targets), trajectory.total_steps, step)
        count = 0
        for target in [t for t in settings.targets if t not in recorded and t <= goal + 1e-9]:
            count = nearest_count(sizes, removed_before, target * total, start=count)
            kept = structure.without(order[:count])
            loss = ranking.loss if ranking.loss is not None else float("nan")
            record = CheckpointRecord.of(kept, spec, target, step, loss)
            if measure is not None:
                check_stop(observer.should_stop, f"the measurement of target {target:g}")
                if step_refit is not None:  # the model is refit: measure the checkpoint as cut
                    record.metrics = step_refit.measure_cut(kept, measure)
                else:
                    with torch.no_grad(), unit_masks(model, adapter, structure_masks(adapter, structure, kept)):
                        record.metrics = measure(model)
            if register:
                observer.on_checkpoint(record)
            trajectory.checkpoints.append(record)
            recorded.add(target)
        count = nearest_count(sizes, removed_before, goal * total, start=count)
        new_structure = structure.without(order[:count])
        adapter.slice_model(model, structure, new_structure)
        structure = new_structure
        seconds = time.perf_counter() - started
        trajectory.completed_steps = step
        trajectory.structure = structure
        trajectory.elapsed_seconds += seconds
        observer.on_step(
            StepReport(step, trajectory.total_steps, structure.sparsity(spec), ranking.loss, seconds, count), trajectory
        )
        if step_refit is not None and step < trajectory.total_steps:  # after the step is saved: a stop redoes none
            started = time.perf_counter()
            step_refit.refit(model, structure)
            trajectory.elapsed_seconds += time.perf_counter() - started
    return trajectory


def _search_targets(
    loaded: LoadedModel,
    method: PruningMethod,
    objective: Objective,
    batches: list,
    settings: PruneSettings,
    trajectory: Trajectory,
    observer: PruneObserver,
    measure: Measure | None,
    tensors_dir: str | Path | None,
    state_dir: str | Path | None = None,
    register: bool = True,
    judge: FinalistJudge | None = None,
) -> Trajectory:
    """A search-based method: target by target (ascending), each searched from the dense model
    (left dense); a completed target is a completed step, so a resumed run continues with the next
    target. Its re-solved weights are stored like the reconstruction stage's refit tensors (under
    `tensors_dir` when given, and to the observer's `on_reconstructed`), then the trajectory is
    persisted (`on_step`), then the checkpoint is announced, then the method's state kept to resume
    the target (under `state_dir`) is dropped. With `register` False the reconstruction stage
    refits the chosen structures instead: each is measured as cut, its weights are not kept, and
    the stage announces it."""
    model, adapter, spec = loaded.model, loaded.adapter, loaded.adapter.spec
    device = next(model.parameters()).device
    ctx = SearchContext(
        model,
        adapter,
        objective,
        batches,
        device,
        settings,
        pad_token_id(loaded.tokenizer),
        set(settings.protect_layers),
        observer.on_search,
        observer.should_stop,
        Path(state_dir) if state_dir is not None else None,
        f"{trajectory.base_model}@{trajectory.base_revision}",
        judge,
    )
    for step, target in enumerate(settings.targets, 1):
        if step <= trajectory.completed_steps:
            continue
        if observer.should_stop():
            raise PruningStopped(f"stopped before target {target:g} ({step} of {trajectory.total_steps})")
        started = time.perf_counter()
        outcome = method.search_target(ctx, target)
        kept = outcome.structure
        record = CheckpointRecord.of(kept, spec, target, step, outcome.loss)
        full = Structure.full(spec)
        if measure is not None:
            # its own weights in place, or (the stage refits it later) the structure as cut
            view = outcome.applied() if register else unit_masks(model, adapter, structure_masks(adapter, full, kept))
            with torch.no_grad(), view:
                record.metrics = measure(model)
        seconds = time.perf_counter() - started
        trajectory.checkpoints.append(record)
        trajectory.completed_steps = step
        trajectory.structure = kept
        trajectory.elapsed_seconds += seconds
        removed = sum(len(a) - len(b) for k in KINDS for a, b in zip(full.kept(k), kept.kept(k), strict=True))
        if register:
            data = tensors_bytes(outcome.weights)  # stored like a reconstruction stage's refit tensors
            record.reconstruction, record.reconstruction_sha256 = method.name, hashlib.sha256(data).hexdigest()
            if tensors_dir is not None:
                write_atomic(reconstruction_file(tensors_dir, record), data)
            observer.on_reconstructed(record, data, trajectory)
        observer.on_step(
            StepReport(step, trajectory.total_steps, record.sparsity, outcome.loss, seconds, removed), trajectory
        )
        if register:
            observer.on_checkpoint(record)
        if outcome.committed is not None:
            outcome.committed()
    return trajectory
