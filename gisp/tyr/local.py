"""Local pruning of one block with weight update: the rungs of a T'yr ladder.

A block is the units feeding one output projection (KV groups into o_proj, channels into
down_proj). Given the Gram matrix H = XᵀX of that projection's inputs (float64), units are removed
greedily by the grouped OBS error tr(W_g (H⁻¹)_gg⁻¹ W_gᵀ), the inverse and the weights updated in
closed form between removal rounds; at every requested level the kept weights are re-solved
exactly, W_kept = (H_kk + λ)⁻¹ H_k: W_denseᵀ (the projection reproducing the dense block's output on
the same inputs). Levels are nested: each removes more units from the one before.

With `anchor`, the re-solve's ridge pulls toward the dense weight's kept columns instead of zero,
W_kept = (H_kk + λ)⁻¹ (H_k: W_denseᵀ + λ W_dense[:, kept]ᵀ): a large λ then means "cut, no refit"
rather than "shrink", which the reconstruction stage found to hold up better out of domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gisp.reconstruction import ridge_solve
from gisp.slots import unit_slots


@dataclass
class Rung:
    """One level of a block: the kept units (positions in the block, ascending) and the re-solved
    output-projection weight over their input columns, [out, kept·unit_size]."""

    kept: list[int]
    weight: Tensor


def _scores(weight: Tensor, hinv: Tensor, units: list[int], size: int) -> Tensor:
    """Grouped OBS error of removing each unit alone: tr(W_g (H⁻¹_gg)⁻¹ W_gᵀ)."""
    n = len(units)
    cols = unit_slots(units, size)
    w = weight[:, cols].reshape(weight.shape[0], n, size).permute(1, 0, 2)  # [n, out, s]
    h = hinv[cols][:, cols].reshape(n, size, n, size)
    index = torch.arange(n)
    blocks = h[index, :, index, :]  # [n, s, s]
    blocks_inv = torch.linalg.pinv(blocks, hermitian=True)
    return torch.einsum("nos,nst,not->n", w, blocks_inv, w)


def _remove(weight: Tensor, hinv: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    """OBS update for dropping input columns `cols`: the weights compensate through the others
    and the inverse Gram loses those rows and columns (Schur complement)."""
    block_inv = torch.linalg.pinv(hinv[cols][:, cols], hermitian=True)
    weight = weight - weight[:, cols] @ block_inv @ hinv[cols, :]
    hinv = hinv - hinv[:, cols] @ block_inv @ hinv[cols, :]
    weight[:, cols] = 0
    hinv[cols, :] = 0
    hinv[:, cols] = 0
    return weight, hinv


def ladder(
    gram: Tensor,
    dense: Tensor,
    unit_size: int,
    counts: list[int],
    damp: float,
    rounds: int,
    what: str = "",
    anchor: bool = False,
) -> dict[int, Rung]:
    """Rungs for every kept-unit count in `counts` (any order): greedy removal from the dense
    block down to each count in turn, at most `rounds` removal rounds per level, then an exact
    re-solve of the kept weights (its ridge toward the dense kept columns with `anchor`, else
    toward zero). A count equal to the block's width keeps the dense weight."""
    gram = gram.to(torch.float64)
    weight = dense.detach().to(device=gram.device, dtype=torch.float64)
    original = weight.clone()
    units = list(range(gram.shape[0] // unit_size))
    cross = gram @ weight.T  # targets: the dense projection's output on the same inputs
    eye = torch.eye(gram.shape[0], dtype=torch.float64, device=gram.device)
    hinv = ridge_solve(gram, eye, damp, what=what)
    kept = list(units)
    out: dict[int, Rung] = {}
    for count in sorted(set(counts), reverse=True):
        remove = len(kept) - count
        if remove > 0:
            parts = min(rounds, remove)
            for part in range(parts):
                take = remove // parts + (1 if part < remove % parts else 0)
                scores = _scores(weight, hinv, kept, unit_size)
                order = sorted(range(len(kept)), key=lambda i: (float(scores[i]), kept[i]))
                gone = sorted(kept[i] for i in order[:take])
                weight, hinv = _remove(weight, hinv, unit_slots(gone, unit_size))
                kept = [u for u in kept if u not in set(gone)]
        if count == len(units):
            solved = dense.detach().float().cpu().clone()
        elif count == 0:
            solved = torch.zeros(dense.shape[0], 0)
        else:
            cols = unit_slots(kept, unit_size).to(gram.device)
            prior = original[:, cols].T if anchor else None
            w = ridge_solve(gram[cols][:, cols], cross[cols], damp, what=what, prior=prior).T
            weight = torch.zeros_like(weight)
            weight[:, cols] = w
            solved = w.float().cpu().contiguous()
        out[count] = Rung(kept=list(kept), weight=solved)
    return out
