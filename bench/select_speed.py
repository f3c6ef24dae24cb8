"""Time of the greedy unit selection inside a layer (`lstsq-select*`, the default's slow part on
wide MLPs) against the previous form of the same algorithm, which re-solved the kept weights
(inverse @ cross, O(n²·out)) every round instead of downdating them. Both run side by side on the
same synthetic projection (width n channels, `out` outputs, half the channels removed) in one
process; the script also checks that they choose the same channels.

    OMP_NUM_THREADS=1 python3 bench/select_speed.py --widths 1536,5632 --out-features 576,2048
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from gisp.reconstruction.base import ProjectionStats  # noqa: E402
from gisp.reconstruction.builtin import ROUNDS, select_units  # noqa: E402
from gisp.slots import unit_slots  # noqa: E402


def resolving_select(stats: ProjectionStats, count: int) -> list[int]:
    """The selection as it was before the re-solve was downdated: `inverse @ cross` every round."""
    alive, size = list(stats.candidates), stats.unit_size
    remove = len(alive) - count
    rounds = max(1, min(ROUNDS, remove))
    scale = float(torch.diagonal(stats.gram).mean()) or 1.0
    n = stats.gram.shape[0]
    a = stats.gram + max(stats.damp, 1e-8) * scale * torch.eye(n, dtype=torch.float64)
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(a))
    cross = stats.cross
    for done in range(rounds):
        step = math.ceil((remove - (len(stats.candidates) - len(alive))) / (rounds - done))
        if step <= 0:
            break
        w = inverse @ cross
        groups = len(alive)
        blocks = inverse.view(groups, size, groups, size).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
        wg = w.view(groups, size, -1)
        error = torch.nan_to_num((torch.linalg.solve(blocks, wg) * wg).sum(dim=(1, 2)), nan=float("inf"))
        order = sorted(range(groups), key=lambda g: (float(error[g]), alive[g]))
        stay_groups, gone_groups = sorted(order[step:]), sorted(order[:step])
        gone, stay = unit_slots(gone_groups, size), unit_slots(stay_groups, size)
        inv_ss, inv_sg, inv_gg = inverse[stay][:, stay], inverse[stay][:, gone], inverse[gone][:, gone]
        inverse = inv_ss - inv_sg @ torch.linalg.solve(inv_gg, inv_sg.T)
        cross = cross[stay]
        alive = [alive[g] for g in stay_groups]
    return alive


def projection(width: int, out: int, tokens: int) -> ProjectionStats:
    g = torch.Generator().manual_seed(width)
    x = torch.randn(tokens, width, generator=g, dtype=torch.float64) * torch.rand(
        width, generator=g, dtype=torch.float64
    )
    y = x @ torch.randn(width, out, generator=g, dtype=torch.float64)
    return ProjectionStats(
        what=f"random {width}→{out}",
        unit_size=1,
        candidates=list(range(width)),
        keep=list(range(width // 2)),
        dense_weight=torch.zeros(out, width),
        dense_bias=None,
        dense_mean=x.mean(0),
        gram=x.T @ x,
        cross=x.T @ y,
        tokens=tokens,
        damp=1e-2,
    )


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--widths", default="1536,5632", help="MLP channels (SmolLM2-135M, TinyLlama-1.1B)")
    parser.add_argument("--out-features", default="576,2048", help="the down_proj's outputs, one per width")
    parser.add_argument("--tokens", type=int, default=8192)
    args = parser.parse_args()
    common.setup(args)
    rows = []
    for width, out in zip(map(int, args.widths.split(",")), map(int, args.out_features.split(",")), strict=True):
        stats = projection(width, out, max(args.tokens, width))
        started = time.perf_counter()
        new = select_units(stats, width // 2)
        fast = time.perf_counter() - started
        started = time.perf_counter()
        old = resolving_select(stats, width // 2)
        slow = time.perf_counter() - started
        rows.append([width, out, f"{slow:.2f}", f"{fast:.2f}", f"{slow / fast:.1f}×", "yes" if new == old else "NO"])
        print(rows[-1], flush=True)
    table = common.markdown_table(
        ["channels", "outputs", "re-solve every round (s)", "downdated (s)", "speed-up", "same choice"], rows
    )
    common.emit(common.run_header("Greedy unit selection: downdated vs re-solved", args) + "\n" + table, args)


if __name__ == "__main__":
    main()
