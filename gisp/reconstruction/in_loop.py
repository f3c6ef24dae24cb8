"""Reconstruction inside the pruning loop (`reconstruct_in_loop`): after every step, the pruned
model's output projections are refit to the dense model, so the next step's importance is
measured on the compensated model rather than on the weights as cut.

The refit is the run's variant's `step_variant` (plain `lstsq` or `lstsq-anchored`: it must keep the
units the step chose, since the schedule's structure is the method's), solved from the dense model
for the current structure with the stage's layer-streamed solver, then written into the sliced
model. Every layer's o_proj/down_proj is replaced, so the state after a step depends only on that
step's structure: a resumed run re-applies it and continues exactly.

Checkpoints are still measured, recorded and reconstructed as cut from the dense model (the
stage's per-checkpoint refit follows as usual); the loop changes only which units go. The cost is a
second copy of the model in memory (the dense one the refit fits to) and one refit per step."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gisp.config import PruneSettings
from gisp.data import Example
from gisp.loading import LoadedModel
from gisp.masking import structure_masks, unit_masks
from gisp.objectives import get_objective
from gisp.objectives.base import pad_token_id
from gisp.reconstruction.base import get_reconstruction
from gisp.reconstruction.stream import Hooks, catch_inputs, reconstruct
from gisp.reconstruction.tensors import apply_tensors
from gisp.structure import Structure


class StepRefit:
    """Refits a sliced model between steps against `dense`, which it keeps unchanged."""

    def __init__(
        self,
        dense: LoadedModel,
        examples: list[Example],
        settings: PruneSettings,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        name = get_reconstruction(settings.reconstruct).step_variant
        if name is None:
            raise ValueError(f"reconstruct {settings.reconstruct!r} has no in-loop refit")
        self.dense, self.settings = dense, settings
        self.variant = get_reconstruction(name)
        objective = get_objective(settings.objective)
        self.batches = objective.batches(examples, settings.batch_size, pad_token_id(dense.tokenizer))
        self.hooks = Hooks(should_stop=should_stop or (lambda: False))
        self.caught = catch_inputs(dense.model, dense.adapter, self.batches)
        self.refits = 0

    def refit(self, model: nn.Module, structure: Structure) -> None:
        """Set `model` (sliced to `structure`) to that structure's refit output projections."""
        result = reconstruct(
            self.dense.model,
            self.dense.adapter,
            structure,
            self.batches,
            self.variant,
            self.settings.reconstruct_lambda,
            None,
            self.hooks,
            self.caught,
        )
        apply_tensors(model, result.tensors)
        self.refits += 1

    @torch.no_grad()
    def measure_cut(self, structure: Structure, measure: Callable[[nn.Module], dict[str, float]]) -> dict[str, float]:
        """`measure` of the checkpoint `structure` with the weights as cut from the dense model."""
        adapter = self.dense.adapter
        masks = structure_masks(adapter, Structure.full(adapter.spec), structure)
        with unit_masks(self.dense.model, adapter, masks):
            return measure(self.dense.model)
