"""`tyr_finalists`: with `tyr_refit stage`, the reconstruction stage refits the search's best
allocations (and its start, when the stage's refit chooses the units) without the held-back
calibration sequences, and the one with the lowest loss on those becomes the checkpoint.
stories260K (real weights and text) with small search budgets; the judge on a tiny random model."""

from __future__ import annotations

from pathlib import Path

import pytest

from gisp.config import PruneSettings
from gisp.errors import ConfigError
from gisp.methods.search import SearchProgress, Verdict
from gisp.pruner import PruneObserver
from gisp.reconstruction.finalists import FinalistJudge, finalist_judge
from gisp.run import run
from gisp.structure import Structure
from gisp.trajectory import Trajectory
from gisp.tyr.allocate import TyrSession, uniform_counts
from tests.engine.test_tyr import SMALL
from tests.engine.tiny import random_examples, tiny_model

TARGETS = [0.3, 0.5]


class Searching(PruneObserver):
    def __init__(self) -> None:
        self.progress: list[SearchProgress] = []

    def on_search(self, progress: SearchProgress) -> None:
        self.progress.append(progress)


def _judged_run(
    model: Path, text: Path, monkeypatch: pytest.MonkeyPatch, **kw
) -> tuple[Trajectory, list[tuple[list[Structure], list[Verdict]]], Searching]:
    """A tyr run refit by the stage, with every call of the real judge recorded, by target."""
    calls: list[tuple[list[Structure], list[Verdict]]] = []
    real_judge, real_judged = FinalistJudge.judge, TyrSession._judged

    def judge(self, structure, *args, **kwargs):
        verdict = real_judge(self, structure, *args, **kwargs)
        calls[-1][0].append(structure)
        calls[-1][1].append(verdict)
        return verdict

    def judged(self, *args, **kwargs):
        calls.append(([], []))
        return real_judged(self, *args, **kwargs)

    monkeypatch.setattr(FinalistJudge, "judge", judge)
    monkeypatch.setattr(TyrSession, "_judged", judged)
    observer = Searching()
    settings = PruneSettings(targets=TARGETS, samples=16, seq_len=64, heldout=4, tyr_refit="stage", **{**SMALL, **kw})
    trajectory, _ = run(str(model), text, settings, observer=observer)
    return trajectory, calls, observer


def _best(verdicts: list[Verdict]) -> Verdict:
    return min(verdicts, key=lambda v: v.held_loss)


@pytest.mark.integration
def test_the_checkpoint_is_the_finalist_the_stages_refit_makes_best(
    stories_model: Path, stories_text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trajectory, calls, observer = _judged_run(stories_model, stories_text, monkeypatch, tyr_finalists=3)
    assert trajectory.settings["reconstruct"] == "lstsq-select-anchored"  # selects: the start competes too
    assert len(calls) == len(TARGETS)
    spec = None
    records = sorted(trajectory.checkpoints, key=lambda r: r.target)
    for record, (structures, verdicts) in zip(records, calls, strict=True):
        spec = spec or trajectory.arch
        assert 3 <= len(structures) <= 4 and len(verdicts) == len(structures)
        start = uniform_counts(spec, record.target, set())
        widths = [s.layer_widths() for s in structures]
        start_widths = (
            [start[(layer, "attn")] for layer in range(spec.num_layers)],
            [start[(layer, "mlp")] for layer in range(spec.num_layers)],
        )
        assert tuple(start_widths) in [tuple(w) for w in widths]  # the uniform start was judged
        assert len({v.held_loss for v in verdicts}) > 1  # the finalists differ after the refit
        # the stage's final refit (on every sequence) keeps the winner's widths
        assert record.structure.layer_widths() == _best(verdicts).structure.layer_widths()
        assert record.reconstruction == "lstsq-select-anchored" or record.reconstruction_rejected
    layers = trajectory.arch.num_layers
    for target, (structures, _) in zip(TARGETS, calls, strict=True):
        reported = [
            (p.done, p.total, p.loaded) for p in observer.progress if p.phase == "finalists" and p.target == target
        ]
        total = len(structures) * layers
        assert reported == [(done, total, 0) for done in range(1, total + 1)]  # every layer of every refit


@pytest.mark.integration
def test_a_refit_that_keeps_the_searched_units_judges_only_the_searchs_allocations(
    stories_model: Path, stories_text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lstsq-anchored refits the units it is given, so the start (which has no units of its own
    on the last ladders) is not offered, and the checkpoint keeps the winner's units exactly."""
    trajectory, calls, _ = _judged_run(
        stories_model, stories_text, monkeypatch, tyr_finalists=2, reconstruct="lstsq-anchored"
    )
    records = sorted(trajectory.checkpoints, key=lambda r: r.target)
    for record, (structures, verdicts) in zip(records, calls, strict=True):
        assert len(structures) == 2
        assert [v.structure for v in verdicts] == structures  # a non-selecting refit keeps the units
        assert record.structure == _best(verdicts).structure


def test_the_judge_scores_a_deeper_cut_worse() -> None:
    """The held-back loss of the stage's refit: nothing cut is refit back to the dense model, half
    of every MLP cut is not; a judge that scored anything but the refit model would tie them."""
    loaded = tiny_model("llama-gqa")
    spec = loaded.adapter.spec
    settings = PruneSettings(targets=[0.5], method="tyr", tyr_refit="stage", reconstruct="lstsq", batch_size=4)
    judge = finalist_judge(loaded, random_examples(16, 24), settings)
    assert judge is not None and not judge.chooses_units
    full = Structure.full(spec)
    half = Structure(attn=full.attn, mlp=[m[: len(m) // 2] for m in full.mlp])
    progress: list[tuple[int, int]] = []
    verdicts = [judge.judge(s, lambda d, t: progress.append((d, t))) for s in (half, full)]
    assert verdicts[1].held_loss < verdicts[0].held_loss
    assert [v.structure for v in verdicts] == [half, full]
    assert progress == [(d, spec.num_layers) for d in range(1, spec.num_layers + 1)] * 2


def test_no_judge_without_a_refit_or_windows_to_hold_back() -> None:
    loaded = tiny_model("llama-gqa")
    stage = PruneSettings(targets=[0.5], method="tyr", tyr_refit="stage")
    assert finalist_judge(loaded, random_examples(3, 24), stage) is None  # fewer than one held back
    unrefit = PruneSettings(targets=[0.5], method="tyr", tyr_refit="stage", reconstruct="none")
    assert finalist_judge(loaded, random_examples(16, 24), unrefit) is None
    assert finalist_judge(loaded, random_examples(16, 24), stage) is not None


def test_tyr_finalists_names_the_field() -> None:
    assert PruneSettings(targets=[0.5], method="tyr").tyr_finalists == 8
    with pytest.raises(ConfigError) as info:
        PruneSettings(targets=[0.5], method="tyr", tyr_finalists=-1)
    assert info.value.field == "tyr_finalists"
