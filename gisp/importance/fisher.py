"""Empirical Fisher importance of removing a unit: Σ_i (∂L_i/∂m_u)² over calibration samples i.

m_u is a multiplicative mask (=1) on unit u's output, i.e. on its slice of the o_proj/down_proj
input; ∂L_i/∂m_u is the first-order change of sample i's loss when u is removed. One batched
backward per batch gives every per-sample gradient at once: the masks have shape
[sequences, units], and since sequences do not interact, row r of the mask gradient is the
gradient of sequence r's loss alone. For multiple-choice batches a sample is a group of
sequences, so rows are summed per group before squaring. No weight gradients are computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from gisp.importance.base import ImportanceEstimator, ScoreResult, ScoringContext, UnitScores, register_estimator
from gisp.structure import KINDS, Kind


@contextmanager
def per_row_masks(
    model: nn.Module, ctx: ScoringContext, rows: int, device: torch.device
) -> Iterator[dict[tuple[int, Kind], torch.Tensor]]:
    """Masks of ones, shape [rows, units], that require grad, applied to every unit output."""
    layers = ctx.adapter.layers(model)
    masks: dict[tuple[int, Kind], torch.Tensor] = {}
    handles = []
    for index, layer in enumerate(layers):
        for kind in KINDS:
            module = ctx.adapter.unit_output_module(layer, kind)
            if module is None:
                continue
            size = ctx.adapter.output_unit_size(kind)
            units = module.weight.shape[1] // size
            if units == 0:
                continue
            mask = torch.ones(rows, units, device=device, requires_grad=True)
            masks[(index, kind)] = mask

            def hook(_module: nn.Module, args: tuple, mask: torch.Tensor = mask, size: int = size) -> tuple:
                x = args[0]
                scale = mask.to(x.dtype).repeat_interleave(size, dim=1).unsqueeze(1)  # [rows, 1, width]
                return (x * scale,) + tuple(args[1:])

            handles.append(module.register_forward_pre_hook(hook))
    try:
        yield masks
    finally:
        for handle in handles:
            handle.remove()


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
                with per_row_masks(model, ctx, rows, ctx.device) as masks:
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
