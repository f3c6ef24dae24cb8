"""Magnitude baseline: a unit's squared weight L2 norm (Σ w² over every weight it owns),
block-normalized like GISP (with `param`: the unit's mean squared weight, i.e. its RMS weight)
and ranked globally. Needs no data; one shot."""

from __future__ import annotations

import torch

from gisp.methods.base import MethodContext, PruningMethod, Ranking, ascending, register_method, scores_by_unit
from gisp.methods.common import calibration_loss
from gisp.normalization import normalizer
from gisp.structure import KINDS


def _sum_squares(values: torch.Tensor, axis: int, unit_size: int) -> torch.Tensor:
    squares = values.detach().float().pow(2)
    per_slice = squares.sum(dim=tuple(d for d in range(squares.dim()) if d != axis)) if squares.dim() > 1 else squares
    return per_slice.view(-1, unit_size).sum(1).cpu()


@register_method
class MagnitudeMethod(PruningMethod):
    name = "magnitude"
    iterative = False

    def rank(self, ctx: MethodContext) -> Ranking:
        scores = {}
        for i, layer in enumerate(ctx.adapter.layers(ctx.model)):
            for kind in KINDS:
                parts = [_sum_squares(g.tensor, g.axis, g.unit_size) for g in ctx.adapter.weight_groups(layer, kind)]
                scores[(i, kind)] = torch.stack(parts).sum(0) if parts else torch.zeros(0)
        divisor = normalizer(ctx.normalization)
        raw = scores_by_unit(ctx.structure, scores)
        normalized = {u: v / divisor(ctx.adapter.spec, u.kind) for u, v in raw.items()}
        return Ranking(order=ascending(ctx.candidates, normalized), loss=calibration_loss(ctx))
