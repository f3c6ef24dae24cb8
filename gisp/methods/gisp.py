"""GISP: loss-based importance, block-wise normalized, ranked globally across all layers.

`gisp` recomputes the ranking at every step of the schedule; `oneshot` uses the same global
ranking once, removing everything up to the largest target in a single step.
"""

from __future__ import annotations

from gisp.importance import ScoringContext, get_estimator
from gisp.methods.base import MethodContext, PruningMethod, Ranking, ascending, register_method, scores_by_unit
from gisp.normalization import normalizer


@register_method
class GispMethod(PruningMethod):
    name = "gisp"

    def rank(self, ctx: MethodContext) -> Ranking:
        estimator = get_estimator(ctx.importance)
        result = estimator.estimate(ScoringContext(ctx.model, ctx.adapter, ctx.objective, ctx.batches, ctx.device))
        divisor = normalizer(ctx.normalization)
        raw = scores_by_unit(ctx.structure, result.scores)
        spec = ctx.adapter.spec
        normalized = {unit: value / divisor(spec, unit.kind) for unit, value in raw.items()}
        return Ranking(order=ascending(ctx.candidates, normalized), loss=result.loss)


@register_method
class OneShotMethod(GispMethod):
    name = "oneshot"
    iterative = False
