"""The built-in variants: `none` (GISP as published), `bias` (FLAP's baseline compensation),
`lstsq` (ridge refit of the kept columns) and `lstsq-select` (the refit, with the units that go
inside a layer chosen by the refit's own error)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gisp.reconstruction.base import ProjectionStats, Reconstruction, Refit, register_reconstruction
from gisp.reconstruction.solve import ridge_solve


@register_reconstruction
class NoReconstruction(Reconstruction):
    """The pruned weights as cut: what the GISP paper evaluates."""

    name = "none"
    refits = False

    def refit(self, stats: ProjectionStats) -> Refit:
        every = list(range(len(stats.dense_mean) // stats.unit_size))
        return Refit(stats.keep, stats.dense_weight[:, stats.columns(stats.keep, every)], None)


@register_reconstruction
class BiasCompensation(Reconstruction):
    """FLAP: the removed units' mean contribution on the calibration tokens becomes a bias, so the
    layer's output keeps its mean. No solve; cheap and safe, but it fixes the mean only."""

    name = "bias"
    adds_bias = True

    def refit(self, stats: ProjectionStats) -> Refit:
        every = list(range(len(stats.dense_mean) // stats.unit_size))
        gone = [u for u in every if u not in set(stats.keep)]
        w = stats.dense_weight.to(torch.float64)
        bias = w[:, stats.columns(gone, every)] @ stats.dense_mean[stats.columns(gone, every)]
        if stats.dense_bias is not None:
            bias = bias + stats.dense_bias.to(torch.float64)
        return Refit(stats.keep, stats.dense_weight[:, stats.columns(stats.keep, every)], bias)


def _solve_kept(stats: ProjectionStats, keep: list[int]) -> Tensor:
    cols = stats.columns(keep, stats.candidates).to(stats.gram.device)
    if len(cols) == 0:
        return stats.dense_weight.new_zeros(stats.dense_weight.shape[0], 0)
    w = ridge_solve(stats.gram[cols][:, cols], stats.cross[cols], stats.damp, what=stats.what)
    return w.T.to(stats.dense_weight.dtype)


@register_reconstruction
class LeastSquares(Reconstruction):
    """The kept columns re-solved so that the pruned layer's inputs reproduce the dense output:
    W = (XᵀX + λ·mean(diag)·I)⁻¹ XᵀY (SparseGPT-style sequential, errors propagated)."""

    name = "lstsq"
    validates = True

    def refit(self, stats: ProjectionStats) -> Refit:
        return Refit(stats.keep, _solve_kept(stats, stats.keep), None)


ROUNDS = 8  # removal rounds between exact re-solves


@register_reconstruction
class LeastSquaresSelect(Reconstruction):
    """The global ranking says how many units a layer keeps; the layer's Gram matrix says which:
    greedy OBS-style group removal (each round drops the units whose removal, with the rest
    re-solved, raises the output error least), then the exact ridge refit of what stays."""

    name = "lstsq-select"
    selects = True
    validates = True

    def refit(self, stats: ProjectionStats) -> Refit:
        keep = select_units(stats, len(stats.keep))
        return Refit(keep, _solve_kept(stats, keep), None)


def select_units(stats: ProjectionStats, count: int) -> list[int]:
    """`count` of the candidates, chosen by greedy group OBS on the damped Gram matrix."""
    alive = list(stats.candidates)
    remove = len(alive) - count
    size = stats.unit_size
    rounds = max(1, min(ROUNDS, remove))
    scale = float(torch.diagonal(stats.gram).mean()) or 1.0
    for done in range(rounds):
        step = math.ceil((remove - (len(stats.candidates) - len(alive))) / (rounds - done))
        if step <= 0:
            break
        cols = stats.columns(alive, stats.candidates).to(stats.gram.device)
        a = stats.gram[cols][:, cols] + stats.damp * scale * torch.eye(
            len(cols), dtype=torch.float64, device=cols.device
        )
        inverse = torch.linalg.inv(a)
        w = inverse @ stats.cross[cols]  # the current re-solve, [alive × size, out]
        groups = len(alive)
        blocks = inverse.view(groups, size, groups, size).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # [g, s, s]
        wg = w.view(groups, size, -1)
        error = (torch.linalg.solve(blocks, wg) * wg).sum(dim=(1, 2))  # rise in ‖XW − Y‖² if the group goes
        error = torch.nan_to_num(error, nan=float("inf"))
        order = sorted(range(groups), key=lambda g: (float(error[g]), alive[g]))
        gone = {alive[g] for g in order[:step]}
        alive = [u for u in alive if u not in gone]
    return alive
