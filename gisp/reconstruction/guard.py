"""The end-to-end guard of the reconstruction stage: a refit is kept only if it lowers the
objective's loss on calibration sequences its weights never saw.

Why: each projection's refit is chosen by its *local* error (the module's output against the dense
one), and on a model that is wide for its calibration set (SmolLM2-135M with 32×128 tokens) a refit
can lower every local error yet raise the model's loss, in domain and more out of it. The guard
checks what the user gets, the whole model's loss, on the held-back sequences (every
`HOLD_EVERY`-th calibration example; the checked fit is solved without them).

Why per checkpoint, not per layer: the loss of the whole model is what matters, and it costs two
forward passes over a quarter of the calibration set per checkpoint (the cut weights' pass once).
A per-layer guard would need a forward pass of the rest of the model for each layer and choice
(30 layers × 2 on SmolLM2), and the layers' effects are not additive, so keeping the layers that
each look good alone does not promise a better model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gisp.adapters import ArchitectureAdapter
from gisp.data import Example
from gisp.masking import structure_masks, unit_masks
from gisp.objectives.base import Batch, Objective
from gisp.reconstruction.stream import HOLD_EVERY
from gisp.reconstruction.tensors import reconstructed_view
from gisp.structure import Structure


def guard_examples(examples: list[Example]) -> list[Example]:
    """The held-back calibration examples (every HOLD_EVERY-th), none when there are fewer than
    HOLD_EVERY (then nothing is held back and the guard cannot check).

    For the sequence objectives these are exactly the sequences the refit holds back; for a choice
    objective (an example is an item of several sequences) the sequences held back are counted over
    all items' sequences, so an item here may have been partly seen."""
    if len(examples) < HOLD_EVERY:
        return []
    return examples[HOLD_EVERY - 1 :: HOLD_EVERY]


@torch.no_grad()
def objective_loss(model: nn.Module, objective: Objective, batches: list[Batch]) -> float:
    """The objective's mean loss over the samples of `batches`."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches:
        losses = objective.sample_losses(model, batch.to(device))
        total += float(losses.double().sum())
        count += int(losses.numel())
    return total / max(count, 1)


@dataclass
class Verdict:
    keep: bool
    refit_loss: float
    cut_loss: float


def judge(
    model: nn.Module,
    adapter: ArchitectureAdapter,
    objective: Objective,
    batches: list[Batch],
    refit: tuple[Structure, dict[str, Tensor]],
    cut: Structure,
    cut_loss: float | None = None,
) -> Verdict:
    """Whether the refit (structure, tensors) lowers the objective's loss on `batches` below the
    weights as cut of `cut` (`cut_loss` when already measured). A tie keeps the cut weights."""
    if cut_loss is None:
        # the dense model with the cut units' outputs zeroed, as the pruner measures a checkpoint
        with unit_masks(model, adapter, structure_masks(adapter, Structure.full(adapter.spec), cut)):
            cut_loss = objective_loss(model, objective, batches)
    structure, tensors = refit
    with reconstructed_view(model, adapter, structure, tensors):
        refit_loss = objective_loss(model, objective, batches)
    return Verdict(refit_loss < cut_loss, refit_loss, cut_loss)
