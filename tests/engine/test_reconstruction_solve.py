"""The ridge solver and the Gram accumulator: exact on a clean problem, robust on a singular one."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from gisp.errors import ReconstructionError
from gisp.reconstruction import GramAccumulator, ridge_solve


def test_streamed_gram_equals_one_shot_and_recovers_an_unpruned_linear() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 50, 16)
    acc = GramAccumulator(16, 8)
    with torch.no_grad():
        for batch in x:  # streamed in four batches
            acc.add(batch, linear(batch))
    rows = x.reshape(-1, 16).double()
    assert acc.count == 200
    assert torch.allclose(acc.gram, rows.T @ rows)
    assert torch.allclose(acc.mean_x, rows.mean(0))
    w = acc.solve(1e-10, what="layer 0 o_proj")
    assert w.dtype == torch.float64 and w.shape == (16, 8)
    assert torch.allclose(w.T.float(), linear.weight, atol=1e-5)  # λ→0 on the module's own outputs: the dense weight


def test_the_damp_shrinks_the_solution() -> None:
    torch.manual_seed(1)
    x, y = torch.randn(40, 6).double(), torch.randn(40, 3).double()
    small = ridge_solve(x.T @ x, x.T @ y, 1e-8)
    large = ridge_solve(x.T @ x, x.T @ y, 10.0)
    assert large.norm() < small.norm()


def test_a_singular_gram_is_solved_and_logged_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(2)
    x = torch.randn(5, 12).double()  # 5 tokens over 12 inputs: rank 5
    x[:, 3] = 0.0  # and a dead input
    y = torch.randn(5, 4).double()
    with caplog.at_level(logging.WARNING, logger="gisp"):
        w = ridge_solve(x.T @ x, x.T @ y, 0.0, what="layer 1 down_proj")
    assert torch.isfinite(w).all()
    assert "layer 1 down_proj" in caplog.text  # logged as ill-conditioned or as a fallback
    assert torch.allclose(x @ w, y, atol=1e-6)  # underdetermined: the fit is exact
    damped = ridge_solve(x.T @ x, x.T @ y, 1e-2)
    assert torch.isfinite(damped).all() and float(damped[3].abs().max()) == 0.0  # a dead input gets no weight


def test_non_finite_statistics_raise_an_error_naming_the_solve() -> None:
    gram = torch.eye(3, dtype=torch.float64)
    gram[0, 0] = float("nan")
    with pytest.raises(ReconstructionError, match="layer 2 o_proj"):
        ridge_solve(gram, torch.ones(3, 2, dtype=torch.float64), 1e-2, what="layer 2 o_proj")


def test_mismatched_shapes_are_refused() -> None:
    acc = GramAccumulator(4)
    with pytest.raises(ValueError, match="width 5"):
        acc.add(torch.randn(2, 5))
    with pytest.raises(ValueError, match="does not match"):
        ridge_solve(torch.eye(3), torch.ones(4, 1), 0.1)


def test_an_anchored_solve_goes_from_the_plain_refit_to_the_prior() -> None:
    torch.manual_seed(3)
    x, y = torch.randn(60, 10).double(), torch.randn(60, 4).double()
    gram, cross = x.T @ x, x.T @ y
    prior = torch.randn(10, 4).double()
    plain = ridge_solve(gram, cross, 0.0)
    assert torch.allclose(ridge_solve(gram, cross, 0.0, prior=prior), plain)  # λ = 0: the prior plays no part
    assert torch.allclose(ridge_solve(gram, cross, 1e9, prior=prior), prior, atol=1e-6)  # huge λ: the prior
    assert ridge_solve(gram, cross, 1e9).abs().max() < 1e-6  # while the plain ridge goes to zero
    # a middle λ lies between: nearer the prior than the refit is, and fitting better than the prior
    middle = ridge_solve(gram, cross, 1.0, prior=prior)
    assert (middle - prior).norm() < (plain - prior).norm()
    assert (x @ middle - y).norm() < (x @ prior - y).norm()


def test_a_prior_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="prior"):
        ridge_solve(torch.eye(3, dtype=torch.float64), torch.ones(3, 2), 1e-2, prior=torch.zeros(2, 3))


def _stats(units: int, size: int, out: int, keep: int, seed: int):
    from gisp.reconstruction.base import ProjectionStats

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(400, units * size, generator=g, dtype=torch.float64)
    x = x @ torch.randn(units * size, units * size, generator=g, dtype=torch.float64)  # correlated inputs
    x[:, : size * 2] *= 0.01  # the first two units barely carry anything: they should go first
    w = torch.randn(units * size, out, generator=g, dtype=torch.float64)
    y = x @ w
    return ProjectionStats(
        what="layer 0 test",
        unit_size=size,
        candidates=list(range(units)),
        keep=list(range(keep)),
        dense_weight=w.T.float(),
        dense_bias=None,
        dense_mean=x.mean(0),
        gram=x.T @ x,
        cross=x.T @ y,
        tokens=400,
        damp=1e-2,
    )


def _select_by_full_resolves(stats, count: int) -> list[int]:
    """The greedy removal written the slow way: every round inverts the kept Gram block afresh."""
    import math

    from gisp.reconstruction.builtin import ROUNDS
    from gisp.slots import unit_slots

    alive, size = list(stats.candidates), stats.unit_size
    remove = len(alive) - count
    rounds = max(1, min(ROUNDS, remove))
    scale = float(torch.diagonal(stats.gram).mean())
    a = stats.gram + stats.damp * scale * torch.eye(stats.gram.shape[0], dtype=torch.float64)
    for done in range(rounds):
        step = math.ceil((remove - (len(stats.candidates) - len(alive))) / (rounds - done))
        if step <= 0:
            break
        cols = unit_slots(alive, size)
        inverse = torch.linalg.inv(a[cols][:, cols])
        w = inverse @ stats.cross[cols]
        errors = []
        for i in range(len(alive)):
            block = inverse[i * size : (i + 1) * size, i * size : (i + 1) * size]
            wg = w[i * size : (i + 1) * size]
            errors.append(float((torch.linalg.solve(block, wg) * wg).sum()))
        order = sorted(range(len(alive)), key=lambda i: (errors[i], alive[i]))
        alive = sorted(alive[i] for i in order[step:])
    return alive


@pytest.mark.parametrize("units,size,keep", [(40, 1, 13), (12, 4, 5)])
def test_greedy_selection_with_downdates_matches_full_re_solves(units: int, size: int, keep: int) -> None:
    from gisp.reconstruction.builtin import select_units

    stats = _stats(units, size, out=6, keep=keep, seed=units)
    chosen = select_units(stats, keep)
    assert chosen == _select_by_full_resolves(stats, keep)
    assert len(chosen) == keep and 0 not in chosen and 1 not in chosen  # the near-silent units went
