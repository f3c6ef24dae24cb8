"""The paper's first-order score: per weight |w · ḡ| with ḡ the mean gradient of the objective over
the calibration samples, summed over every weight a unit owns."""

from __future__ import annotations

import torch

from gisp.importance.base import ImportanceEstimator, ScoreResult, ScoringContext, UnitScores, register_estimator


def _group_sums(values: torch.Tensor, axis: int, unit_size: int) -> torch.Tensor:
    """Sum `values` over every axis but `axis`, then over each unit's `unit_size` slices."""
    per_slice = values.sum(dim=tuple(d for d in range(values.dim()) if d != axis)) if values.dim() > 1 else values
    return per_slice.view(-1, unit_size).sum(1)


@register_estimator
class TaylorImportance(ImportanceEstimator):
    name = "taylor"

    def estimate(self, ctx: ScoringContext) -> ScoreResult:
        layers = ctx.adapter.layers(ctx.model)
        groups = {
            (i, kind): ctx.adapter.weight_groups(layer, kind)
            for i, layer in enumerate(layers)
            for kind in ("attn", "mlp")
        }
        for param in ctx.model.parameters():
            param.requires_grad_(False)
            param.grad = None
        for group_list in groups.values():
            for group in group_list:
                group.tensor.requires_grad_(True)
        total = sum(batch.num_samples for batch in ctx.batches)
        loss_sum = 0.0
        for batch in ctx.batches:
            losses = ctx.objective.sample_losses(ctx.model, batch.to(ctx.device))
            (losses.sum() / total).backward()
            loss_sum += float(losses.detach().sum())
        scores: UnitScores = {}
        with torch.no_grad():
            for key, group_list in groups.items():
                if not group_list:
                    scores[key] = torch.zeros(0)
                    continue
                acc = None
                for group in group_list:
                    tensor = group.tensor
                    grad = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
                    part = _group_sums((tensor.float() * grad.float()).abs(), group.axis, group.unit_size)
                    acc = part if acc is None else acc + part
                scores[key] = acc.cpu()
        for group_list in groups.values():
            for group in group_list:
                group.tensor.grad = None
                group.tensor.requires_grad_(False)
        return ScoreResult(scores=scores, loss=loss_sum / max(total, 1))
