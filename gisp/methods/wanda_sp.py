"""Wanda-sp (An et al., FLAP paper's structured Wanda): local, uniform, one shot.

Per weight |W_ij|·‖X_j‖, with ‖X_j‖ the L2 norm over calibration tokens of input feature j of the
weight's linear layer (collected with forward pre-hooks), summed over every weight a unit owns.
Units are ranked inside their own (layer, kind) and ordered globally by rank fraction
(rank + ½)/n, so any cut of the global order removes the same share (to within one unit) from
every layer of each kind: the uniform per-layer sparsity of a local method.
"""

from __future__ import annotations

import torch
from torch import nn

from gisp.adapters import WeightGroup
from gisp.methods.base import MethodContext, PruningMethod, Ranking, register_method, scores_by_unit
from gisp.structure import KINDS, Unit


class InputNorms:
    """Forward pre-hooks summing each module's squared inputs per feature over unpadded tokens."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = list({id(m): m for m in modules}.values())
        self.sums: dict[int, torch.Tensor] = {}
        self.tokens: dict[int, float] = {}
        self.mask: torch.Tensor | None = None  # the current batch's attention mask
        self.handles: list = []

    def _hook(self, module: nn.Module, args: tuple) -> None:
        x = args[0].detach().float()
        tokens = float(x.shape[0] * x.shape[1])
        if self.mask is not None and self.mask.shape == x.shape[:2]:
            x = x * self.mask.to(x.dtype).unsqueeze(-1)
            tokens = float(self.mask.sum())
        squares = x.pow(2).reshape(-1, x.shape[-1]).sum(0)
        key = id(module)
        self.sums[key] = squares if key not in self.sums else self.sums[key] + squares
        self.tokens[key] = self.tokens.get(key, 0.0) + tokens

    def __enter__(self) -> InputNorms:
        self.handles = [m.register_forward_pre_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def norm(self, module: nn.Module) -> torch.Tensor:
        """‖X_j‖ per input feature j of `module`."""
        return self.sums[id(module)].sqrt()


def _group_score(group: WeightGroup, sums: InputNorms) -> torch.Tensor:
    """Σ |W|·‖X_in‖ per unit of one weight group; a bias is a weight on a constant input of 1,
    whose norm over the calibration tokens is √tokens."""
    tensor = group.tensor.detach().float()
    if group.name == "bias":
        per_slice = tensor.abs() * sums.tokens[id(group.module)] ** 0.5
    else:
        norms = sums.norm(group.module).to(tensor.device)  # ‖X‖ per input column
        weighted = tensor.abs() * norms.unsqueeze(0)
        per_slice = weighted.sum(dim=1 - group.axis)
    return per_slice.view(-1, group.unit_size).sum(1).cpu()


@register_method
class WandaSPMethod(PruningMethod):
    name = "wanda-sp"
    iterative = False

    def rank(self, ctx: MethodContext) -> Ranking:
        layers = ctx.adapter.layers(ctx.model)
        groups = {(i, kind): ctx.adapter.weight_groups(layer, kind) for i, layer in enumerate(layers) for kind in KINDS}
        modules = [g.module for group_list in groups.values() for g in group_list if g.name == "weight"]
        total = sum(batch.num_samples for batch in ctx.batches)
        loss_sum = 0.0
        with torch.no_grad(), InputNorms(modules) as sums:
            for batch in ctx.batches:
                batch = batch.to(ctx.device)
                sums.mask = batch.attention_mask
                loss_sum += float(ctx.objective.sample_losses(ctx.model, batch).sum())
        scores = {}
        for key, group_list in groups.items():
            parts = [_group_score(g, sums) for g in group_list]
            scores[key] = torch.stack(parts).sum(0) if parts else torch.zeros(0)
        raw = scores_by_unit(ctx.structure, scores)
        return Ranking(order=uniform_order(ctx.candidates, raw), loss=loss_sum / max(total, 1))


def uniform_order(candidates: list[Unit], score: dict[Unit, float]) -> list[Unit]:
    """Order by within-(layer, kind) rank fraction, so every cut is uniform across layers."""
    by_block: dict[tuple[int, str], list[Unit]] = {}
    for unit in candidates:
        by_block.setdefault((unit.layer, unit.kind), []).append(unit)
    fraction: dict[Unit, float] = {}
    for units in by_block.values():
        ranked = sorted(units, key=lambda u: (score[u], u.index))
        for rank, unit in enumerate(ranked):
            fraction[unit] = (rank + 0.5) / len(ranked)
    return sorted(candidates, key=lambda u: (fraction[u], u.kind, u.layer, score[u], u.index))
