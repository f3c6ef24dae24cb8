"""The reconstruction phase of a run: after the pruning steps, every checkpoint not yet
reconstructed is re-fitted from the dense model, measured on the weights it will be downloaded
with (its un-reconstructed metrics kept beside), handed to the observer to store, then
registered. Checkpoints are done in ascending target order, each independently of the others."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from gisp.config import PruneSettings
from gisp.data import Example
from gisp.loading import LoadedModel
from gisp.objectives import get_objective
from gisp.objectives.base import pad_token_id
from gisp.pruner import Measure, PruneObserver
from gisp.reconstruction.base import get_reconstruction
from gisp.reconstruction.stream import Hooks, catch_inputs, reconstruct
from gisp.reconstruction.tensors import reconstructed_view, reconstruction_file, tensors_bytes, write_atomic
from gisp.trajectory import Trajectory


def needs_reconstruction(settings: PruneSettings) -> bool:
    return get_reconstruction(settings.reconstruct).refits


def reconstruction_examples(calibration: list[Example], extra: list[Example], settings: PruneSettings) -> list[Example]:
    """The windows the refit fits on: the calibration set, or `reconstruct_samples` of it and after."""
    pool = calibration + extra
    return pool[: settings.reconstruct_samples] if settings.reconstruct_samples else calibration


def reconstruct_checkpoints(
    dense: LoadedModel,
    examples: list[Example],
    settings: PruneSettings,
    trajectory: Trajectory,
    observer: PruneObserver | None = None,
    measure: Measure | None = None,
    tensors_dir: str | Path | None = None,
) -> Trajectory:
    """Reconstruct the trajectory's pending checkpoints on `dense` (unpruned, left unchanged).

    Each checkpoint's refit tensors go to the observer and, when `tensors_dir` is given, to
    `reconstruction_file(tensors_dir, record)` (written before the observer hears of it)."""
    observer = observer or PruneObserver()
    variant = get_reconstruction(settings.reconstruct)
    if not variant.refits:
        return trajectory
    records = sorted(trajectory.checkpoints, key=lambda r: r.target)
    pending = [r for r in records if r.reconstruction is None]
    for record in records:  # a resume registers again what was refit (registering twice is a no-op)
        if record.reconstruction is not None:
            observer.on_checkpoint(record)
    if not pending:
        return trajectory
    model, adapter = dense.model, dense.adapter
    objective = get_objective(settings.objective)
    batches = objective.batches(examples, settings.batch_size, pad_token_id(dense.tokenizer))
    caught = catch_inputs(model, adapter, batches)
    for record in pending:
        done = [r for r in records if r.reconstruction is not None and r.target < record.target]
        parent = done[-1].structure if done and variant.selects else None
        hooks = Hooks(
            progress=lambda layers, total, record=record: observer.on_reconstruction_progress(record, layers, total),
            warn=observer.on_warning,
            should_stop=observer.should_stop,
        )
        result = reconstruct(
            model, adapter, record.structure, batches, variant, settings.reconstruct_lambda, parent, hooks, caught
        )
        record.unreconstructed_metrics = dict(record.metrics)
        record.structure = result.structure
        if measure is not None:
            with torch.no_grad(), reconstructed_view(model, adapter, result.structure, result.tensors):
                record.metrics = measure(model)
        data = tensors_bytes(result.tensors)
        record.reconstruction = settings.reconstruct
        record.reconstruction_sha256 = hashlib.sha256(data).hexdigest()
        if tensors_dir is not None:
            write_atomic(reconstruction_file(tensors_dir, record), data)
        observer.on_reconstructed(record, data, trajectory)
        observer.on_trajectory(trajectory)  # persisted, then registered: a crash between is made good below
        observer.on_checkpoint(record)
    return trajectory
