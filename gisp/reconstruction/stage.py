"""The reconstruction phase of a run: after the pruning steps, every checkpoint not yet
reconstructed is re-fitted from the dense model, measured on the weights it will be downloaded
with (its un-reconstructed metrics kept beside), handed to the observer to store, then
registered. Checkpoints are done in ascending target order, each independently of the others.

The guard (`gisp.reconstruction.guard`) fits the checkpoint without the held-back calibration
sequences and keeps the refit only if it lowers the objective's loss on them; a kept refit is then
fitted again on every sequence (so the guard costs a second pass), a rejected checkpoint is
registered with the weights as cut (`reconstruction` unset, `reconstruction_rejected` saying why,
a warning to the observer).

A tyr checkpoint the stage judged among finalists (`tyr_finalists`) gets the second pass too, though
the judge compared the checked fits: shipping the checked fit instead was tried and measured
(bench/second_pass.py, stories260K, 0.4 and 0.5, six seeds) and it was no better in domain (checked
÷ every 0.99 and 0.96 at 0.4 and 0.5 on seeds 0–2, 1.04 and 1.01 on seeds 3–5), so every checkpoint
is refit the same way."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from gisp.config import PruneSettings
from gisp.data import Example
from gisp.loading import LoadedModel
from gisp.methods import get_method
from gisp.objectives import get_objective
from gisp.objectives.base import pad_token_id
from gisp.pruner import Measure, PruneObserver
from gisp.reconstruction.base import get_reconstruction
from gisp.reconstruction.guard import guard_examples, judge
from gisp.reconstruction.stream import Hooks, Result, catch_inputs, reconstruct
from gisp.reconstruction.tensors import reconstructed_view, reconstruction_file, tensors_bytes, write_atomic
from gisp.trajectory import Trajectory

log = logging.getLogger("gisp.reconstruction.guard")


def needs_reconstruction(settings: PruneSettings) -> bool:
    """Whether the stage refits the checkpoints after the pruning: a refitting `reconstruct`, and
    for a search-based method (tyr) only with `tyr_refit` stage (else its own re-solve stands)."""
    if get_method(settings.method).searches and settings.tyr_refit != "stage":
        return False
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
    guard: bool = True,
) -> Trajectory:
    """Reconstruct the trajectory's pending checkpoints on `dense` (unpruned, left unchanged).

    Each checkpoint's refit tensors go to the observer and, when `tensors_dir` is given, to
    `reconstruction_file(tensors_dir, record)` (written before the observer hears of it).
    `guard` False skips the end-to-end check (benchmarks measure the refit alone) and fits the
    final weights on every calibration sequence."""
    observer = observer or PruneObserver()
    variant = get_reconstruction(settings.reconstruct)
    if not variant.refits:
        return trajectory
    records = sorted(trajectory.checkpoints, key=lambda r: r.target)
    pending = [r for r in records if r.reconstruction is None and r.reconstruction_rejected is None]
    for record in records:  # a resume registers again what was decided (registering twice is a no-op)
        if record not in pending:
            observer.on_checkpoint(record)
    if not pending:
        return trajectory
    model, adapter = dense.model, dense.adapter
    objective = get_objective(settings.objective)
    pad_id = pad_token_id(dense.tokenizer)
    batches = objective.batches(examples, settings.batch_size, pad_id)
    held = objective.batches(guard_examples(examples), settings.batch_size, pad_id) if guard else []
    if guard and not held:
        observer.on_warning(
            f"reconstruction: {len(examples)} calibration windows are too few to hold any back; "
            "the refit is kept unchecked"
        )
    caught = catch_inputs(model, adapter, batches)
    passes = 2 if held else 1  # guarded: the checked fit, then the kept one on every sequence
    layers = len(adapter.layers(model))
    nested = not get_method(settings.method).searches
    for record in pending:
        done = [r for r in records if r.reconstruction is not None and r.target < record.target]
        # a selecting refit keeps a nested family nested; a search's checkpoints are not nested
        parent = done[-1].structure if done and variant.selects and nested else None

        def refit(first: bool, record=record, parent=parent) -> Result:
            before = 0 if first else passes - 1  # passes done: the progress runs 0 → 1 over all of them

            def progress(layer: int, total: int, record=record, before=before) -> None:
                observer.on_reconstruction_progress(record, before * total + layer, passes * total)

            hooks = Hooks(progress=progress, warn=observer.on_warning, should_stop=observer.should_stop)
            return reconstruct(
                model,
                adapter,
                record.structure,
                batches,
                variant,
                settings.reconstruct_lambda,
                parent,
                hooks,
                caught,
                holdout=first and bool(held),
                inputs=settings.reconstruct_inputs and variant.least_squares,
                residual=settings.reconstruct_residual if variant.least_squares else 0.0,
                local=settings.reconstruct_target == "local" and variant.least_squares,
            )

        result = refit(True)
        record.unreconstructed_metrics = dict(record.metrics)
        if held:
            verdict = judge(model, adapter, objective, held, (result.structure, result.tensors), record.structure)
            log.info(
                "%s: guard: refit %.4f, weights as cut %.4f on the held-back sequences: %s",
                record.name,
                verdict.refit_loss,
                verdict.cut_loss,
                "kept" if verdict.keep else "rejected",
            )
            if verdict.keep:  # the same refit on every sequence: what was checked, with a third more tokens
                result = refit(False)
            else:
                observer.on_reconstruction_progress(record, passes * layers, passes * layers)
                record.reconstruction_rejected = (
                    f"{record.name}: the {settings.reconstruct} refit raises the {settings.objective} loss on "
                    f"the held-back calibration sequences ({verdict.refit_loss:.4f} vs {verdict.cut_loss:.4f} "
                    "with the weights as cut); the checkpoint keeps the weights as cut"
                )
                observer.on_warning(record.reconstruction_rejected)
                observer.on_trajectory(trajectory)
                observer.on_checkpoint(record)
                continue
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
