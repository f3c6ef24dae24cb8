"""`tyr_anchor`: the ladder's re-solve with its ridge pulled toward the dense weight's kept
columns instead of zero (the reconstruction stage's anchored variants, applied to tyr's rungs)."""

from __future__ import annotations

import pytest
import torch

from gisp.config import PruneSettings
from gisp.errors import ConfigError
from gisp.tyr.local import ladder
from tests.engine.test_tyr import run_tyr

COUNTS = [6, 4, 2, 0]


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Correlated inputs x [400, 12] (6 units of 2 columns), their Gram, a dense weight [5, 12]."""
    torch.manual_seed(0)
    x = torch.randn(400, 12, dtype=torch.float64) @ torch.randn(12, 12, dtype=torch.float64)
    return x, x.T @ x, torch.randn(5, 12)


def _cols(kept: list[int]) -> list[int]:
    return [u * 2 + i for u in kept for i in range(2)]


def test_a_huge_damp_keeps_the_dense_kept_columns_when_anchored_and_shrinks_them_when_not() -> None:
    _, gram, dense = _problem()
    anchored = ladder(gram, dense, 2, COUNTS, damp=1e9, rounds=3, anchor=True)
    plain = ladder(gram, dense, 2, COUNTS, damp=1e9, rounds=3, anchor=False)
    for count in (4, 2):
        cut = dense[:, _cols(anchored[count].kept)]
        assert torch.allclose(anchored[count].weight, cut, atol=1e-6), count
        assert plain[count].weight.abs().max() < 1e-6 * dense.abs().max()  # toward zero instead
    assert torch.equal(anchored[6].weight, dense) and anchored[0].weight.shape == (5, 0)


def test_anchoring_changes_the_rungs_and_still_fits_better_than_cutting() -> None:
    x, gram, dense = _problem()
    anchored = ladder(gram, dense, 2, COUNTS, damp=0.5, rounds=3, anchor=True)
    plain = ladder(gram, dense, 2, COUNTS, damp=0.5, rounds=3, anchor=False)
    target = x @ dense.T.double()
    for count in (4, 2):
        assert not torch.allclose(anchored[count].weight, plain[count].weight, atol=1e-4), count
        cols = _cols(anchored[count].kept)
        fitted = (x[:, cols] @ anchored[count].weight.T.double() - target).pow(2).sum()
        cut = (x[:, cols] @ dense[:, cols].T.double() - target).pow(2).sum()
        assert fitted < cut


def test_with_no_damp_the_anchor_changes_nothing() -> None:
    _, gram, dense = _problem()
    anchored = ladder(gram, dense, 2, COUNTS, damp=0.0, rounds=3, anchor=True)
    plain = ladder(gram, dense, 2, COUNTS, damp=0.0, rounds=3, anchor=False)
    for count in COUNTS:
        assert anchored[count].kept == plain[count].kept
        assert torch.equal(anchored[count].weight, plain[count].weight)


def test_anchored_runs_are_deterministic_and_differ_from_plain_ones() -> None:
    first, _, _ = run_tyr(targets=[0.5], tyr_anchor=True, tyr_damp=0.5)
    second, _, _ = run_tyr(targets=[0.5], tyr_anchor=True, tyr_damp=0.5)
    plain, _, _ = run_tyr(targets=[0.5], tyr_anchor=False, tyr_damp=0.5)
    a, b, c = first.checkpoints[0], second.checkpoints[0], plain.checkpoints[0]
    assert a.structure == b.structure and a.loss == b.loss
    assert a.reconstruction_sha256 == b.reconstruction_sha256  # the same bytes
    assert a.reconstruction_sha256 != c.reconstruction_sha256  # the anchor reached the stored weights
    assert first.settings["tyr_anchor"] is True and plain.settings["tyr_anchor"] is False


def test_tyr_anchor_is_a_boolean_setting() -> None:
    assert PruneSettings(targets=[0.5], method="tyr").tyr_anchor is False
    assert PruneSettings(targets=[0.5], method="tyr", tyr_anchor=True).tyr_anchor is True
    with pytest.raises(ConfigError) as info:
        PruneSettings(targets=[0.5], method="tyr", tyr_anchor="no")  # type: ignore[arg-type]
    assert info.value.field == "tyr_anchor"
