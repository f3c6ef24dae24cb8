"""The built-in variants: `none` (GISP as published), `bias` (FLAP's baseline compensation),
`lstsq` (ridge refit of the kept columns), `lstsq-select` (the refit, with the units that go
inside a layer chosen by the refit's own error), and their `-anchored` forms (the ridge term pulls
toward the weights as cut instead of toward zero)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gisp.reconstruction.base import ProjectionStats, Reconstruction, Refit, register_reconstruction
from gisp.reconstruction.solve import ridge_solve
from gisp.slots import unit_slots


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


def cut_weight(stats: ProjectionStats, keep: list[int]) -> Tensor:
    """The dense projection's columns of `keep`: the weights as cut, [out, len(keep) × unit_size]."""
    every = list(range(len(stats.dense_mean) // stats.unit_size))
    return stats.dense_weight[:, stats.columns(keep, every)]


def solve_kept(stats: ProjectionStats, keep: list[int], anchored: bool = False) -> Tensor:
    """The ridge refit of `keep`'s columns; `anchored` pulls it toward the weights as cut, not zero."""
    cols = stats.columns(keep, stats.candidates).to(stats.gram.device)
    if len(cols) == 0:
        return stats.dense_weight.new_zeros(stats.dense_weight.shape[0], 0)
    prior = cut_weight(stats, keep).T.to(stats.gram.device) if anchored else None
    w = ridge_solve(stats.gram[cols][:, cols], stats.cross[cols], stats.damp, what=stats.what, prior=prior)
    return w.T.to(stats.dense_weight.dtype)


@register_reconstruction
class LeastSquares(Reconstruction):
    """The kept columns re-solved so that the pruned layer's inputs reproduce the dense output:
    W = (XᵀX + λ·mean(diag)·I)⁻¹ XᵀY (SparseGPT-style sequential, errors propagated)."""

    name = "lstsq"
    validates = True
    least_squares = True
    step_variant = "lstsq"

    def refit(self, stats: ProjectionStats) -> Refit:
        return Refit(stats.keep, solve_kept(stats, stats.keep, self.anchored), None)


ROUNDS = 8  # removal rounds between exact re-solves


@register_reconstruction
class LeastSquaresSelect(Reconstruction):
    """The global ranking says how many units a layer keeps; the layer's Gram matrix says which:
    greedy OBS-style group removal (each round drops the units whose removal, with the rest
    re-solved, raises the output error least), then the exact ridge refit of what stays."""

    name = "lstsq-select"
    selects = True
    validates = True
    least_squares = True
    step_variant = "lstsq"

    def refit(self, stats: ProjectionStats) -> Refit:
        keep = select_units(stats, len(stats.keep))
        return Refit(keep, solve_kept(stats, keep, self.anchored), None)


@register_reconstruction
class AnchoredLeastSquares(LeastSquares):
    """`lstsq` with the ridge term pulling toward the weights as cut: W = (G + λ'I)⁻¹ (C + λ'W0).
    The validated λ ladder then runs from the refit to the cut weights instead of toward zero,
    which a refit on few tokens for a wide layer (SmolLM2-135M's 1,536-wide down_proj) needs."""

    name = "lstsq-anchored"
    anchored = True
    step_variant = "lstsq-anchored"


@register_reconstruction
class AnchoredLeastSquaresSelect(LeastSquaresSelect):
    """`lstsq-select` (Gram-chosen units) with the anchored refit of `lstsq-anchored`."""

    name = "lstsq-select-anchored"
    anchored = True
    step_variant = "lstsq-anchored"


def select_units(stats: ProjectionStats, count: int) -> list[int]:
    """`count` of the candidates, chosen by greedy group OBS on the damped Gram matrix.

    The inverse and the re-solve are computed once; each round's removal downdates both (the
    inverse of a principal submatrix is a Schur complement of the inverse, and the re-solve of what
    stays is w_s − H⁻¹_sg (H⁻¹_gg)⁻¹ w_g, exactly), so a round costs O(n²·removed + n·removed·out),
    not O(n³) or O(n²·out)."""
    alive = list(stats.candidates)
    remove = len(alive) - count
    if remove <= 0:
        return alive
    size = stats.unit_size
    rounds = max(1, min(ROUNDS, remove))
    scale = float(torch.diagonal(stats.gram).mean()) or 1.0
    damp = max(stats.damp, 1e-8)  # the greedy scores need an inverse, even of a singular Gram
    n = stats.gram.shape[0]
    a = stats.gram + damp * scale * torch.eye(n, dtype=torch.float64, device=stats.gram.device)
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(a))
    w = inverse @ stats.cross  # the current re-solve, [alive × size, out]
    for done in range(rounds):
        step = math.ceil((remove - (len(stats.candidates) - len(alive))) / (rounds - done))
        if step <= 0:
            break
        groups = len(alive)
        blocks = inverse.view(groups, size, groups, size).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # [g, s, s]
        wg = w.view(groups, size, -1)
        error = (torch.linalg.solve(blocks, wg) * wg).sum(dim=(1, 2))  # rise in ‖XW − Y‖² if the group goes
        error = torch.nan_to_num(error, nan=float("inf"))
        order = sorted(range(groups), key=lambda g: (float(error[g]), alive[g]))
        gone_groups = sorted(order[:step])
        stay_groups = sorted(order[step:])
        gone, stay = unit_slots(gone_groups, size, inverse.device), unit_slots(stay_groups, size, inverse.device)
        if len(stay):
            inv_ss, inv_sg, inv_gg = inverse[stay][:, stay], inverse[stay][:, gone], inverse[gone][:, gone]
            solved = torch.linalg.solve(inv_gg, torch.cat([inv_sg.T, w[gone]], dim=1))
            inverse = inv_ss - inv_sg @ solved[:, : len(stay)]
            w = w[stay] - inv_sg @ solved[:, len(stay) :]
        alive = [alive[g] for g in stay_groups]
    return alive
