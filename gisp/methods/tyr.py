"""T'yr: each target's structure found by search over locally pruned, re-solved levels (gisp.tyr).

Not a ranking: the pruner hands each target to `search_target`, and the checkpoint carries the
re-solved output projections beside its structure. Checkpoints of different targets are searched
independently and need not be nested."""

from __future__ import annotations

from gisp.methods.base import MethodContext, PruningMethod, Ranking, register_method
from gisp.methods.search import SearchContext, SearchOutcome
from gisp.tyr.allocate import TyrSession


@register_method
class TyrMethod(PruningMethod):
    name = "tyr"
    iterative = False
    searches = True

    def __init__(self) -> None:
        self.session: TyrSession | None = None

    def rank(self, ctx: MethodContext) -> Ranking:
        raise NotImplementedError("tyr searches each target's structure; the pruner calls search_target")

    def search_target(self, ctx: SearchContext, target: float) -> SearchOutcome:
        if self.session is None or self.session.ctx is not ctx:
            self.session = TyrSession(ctx)
        return self.session.search(target)
