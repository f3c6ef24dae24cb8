"""Random baseline: a seeded shuffle of all candidate units, cut globally; one shot.
The same seed gives the same order (the candidates are sorted before shuffling)."""

from __future__ import annotations

import random

from gisp.methods.base import MethodContext, PruningMethod, Ranking, register_method
from gisp.methods.common import calibration_loss


@register_method
class RandomMethod(PruningMethod):
    name = "random"
    iterative = False

    def rank(self, ctx: MethodContext) -> Ranking:
        order = sorted(ctx.candidates, key=lambda u: (u.layer, u.kind, u.index))
        random.Random(ctx.seed).shuffle(order)
        return Ranking(order=order, loss=calibration_loss(ctx))
