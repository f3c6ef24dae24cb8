"""Empirical Fisher importance of removing a unit: Σ_i (∂L_i/∂m_u)² over calibration samples i.

m_u is a multiplicative mask (=1) on unit u's output, i.e. on its slice of the o_proj/down_proj
input; ∂L_i/∂m_u is the first-order change of sample i's loss when u is removed. One batched
backward per batch gives every per-sample gradient at once: the masks have shape
[sequences, units], and since sequences do not interact, row r of the mask gradient is the
gradient of sequence r's loss alone. For multiple-choice batches a sample is a group of
sequences, so rows are summed per group before squaring. No weight gradients are computed.
"""

from __future__ import annotations

import torch
from torch import nn

from gisp.importance.base import ImportanceEstimator, ScoreResult, ScoringContext, UnitScores, register_estimator
from gisp.masking import unit_masks
from gisp.structure import KINDS, Kind


def _row_masks(ctx: ScoringContext, rows: int, device: torch.device) -> dict[tuple[int, Kind], torch.Tensor]:
    """Masks of ones, [rows, units], requiring grad, for every layer that keeps units of a kind."""
    masks = {}
    for index, layer in enumerate(ctx.adapter.layers(ctx.model)):
        for kind in KINDS:
            units = _unit_count(ctx, layer, kind)
            if units:
                masks[(index, kind)] = torch.ones(rows, units, device=device, requires_grad=True)
    return masks


def _per_sample(grad: torch.Tensor, group_sizes: list[int] | None) -> torch.Tensor:
    """Row gradients [rows, units] → sample gradients [samples, units]."""
    if group_sizes is None:
        return grad
    return torch.stack([part.sum(0) for part in grad.split(group_sizes)])


def _unit_count(ctx: ScoringContext, layer: nn.Module, kind: Kind) -> int:
    module = ctx.adapter.unit_output_module(layer, kind)
    return 0 if module is None else module.weight.shape[1] // ctx.adapter.output_unit_size(kind)


@register_estimator
class FisherImportance(ImportanceEstimator):
    name = "fisher"

    def estimate(self, ctx: ScoringContext) -> ScoreResult:
        model = ctx.model
        saved = [(p, p.requires_grad) for p in model.parameters()]
        for param in model.parameters():
            param.requires_grad_(False)
            param.grad = None
        layers = ctx.adapter.layers(model)
        scores: UnitScores = {
            (i, kind): torch.zeros(_unit_count(ctx, layer, kind), dtype=torch.float64)
            for i, layer in enumerate(layers)
            for kind in KINDS
        }
        total = sum(batch.num_samples for batch in ctx.batches)
        loss_sum = 0.0
        try:
            for batch in ctx.batches:
                batch = batch.to(ctx.device)
                rows = int(batch.input_ids.shape[0])
                masks = _row_masks(ctx, rows, ctx.device)
                with unit_masks(model, ctx.adapter, masks):
                    losses = ctx.objective.sample_losses(model, batch)
                    losses.sum().backward()
                loss_sum += float(losses.detach().sum())
                for key, mask in masks.items():
                    if mask.grad is None:
                        continue
                    sample_grads = _per_sample(mask.grad.double(), batch.group_sizes)
                    scores[key] += sample_grads.pow(2).sum(0).cpu()
        finally:
            for param, flag in saved:
                param.requires_grad_(flag)
        return ScoreResult(scores={k: v.float() for k, v in scores.items()}, loss=loss_sum / max(total, 1))
