"""`reconstruct_in_loop` on the real stories260K weights: a refit after every step but the last
changes what the next steps remove, checkpoints are still measured as cut from the dense model,
a run stopped between steps resumes to the same trajectory, and settings that cannot use it are
refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gisp
from gisp.config import PruneSettings
from gisp.errors import ConfigError, PruningStopped
from gisp.eval.perplexity import heldout_metrics
from gisp.objectives.base import pad_token_id
from gisp.pruner import PruneObserver, new_trajectory, prune
from gisp.reconstruction.in_loop import StepRefit
from gisp.run import prepare

pytestmark = pytest.mark.integration

SETTINGS = dict(targets=[0.3, 0.5], steps=4, samples=16, seq_len=128, heldout=8, reconstruct="lstsq-anchored")


class StopAfter(PruneObserver):
    def __init__(self, steps: int) -> None:
        self.steps, self.done = steps, 0

    def should_stop(self) -> bool:
        return self.done >= self.steps

    def on_step(self, report, trajectory) -> None:
        self.done = report.step


def _run(stories_model: Path, stories_text: Path, in_loop: bool, stop_after: int | None = None, resume=None):
    settings = PruneSettings(**SETTINGS, reconstruct_in_loop=in_loop)
    prepared = prepare(str(stories_model), stories_text, settings)
    pad = pad_token_id(prepared.loaded.tokenizer)

    def measure(model: torch.nn.Module) -> dict[str, float]:
        return heldout_metrics(model, prepared.heldout, pad)

    refit = StepRefit(gisp.load_model(str(stories_model)), prepared.calibration, settings) if in_loop else None
    trajectory = resume or new_trajectory(prepared.loaded, settings, prepared.data_sha256)
    observer = StopAfter(stop_after) if stop_after else None
    try:
        prune(prepared.loaded, prepared.calibration, settings, trajectory, observer, measure, False, step_refit=refit)
    except PruningStopped:
        pass
    return trajectory, refit, measure


def test_the_refit_between_steps_changes_the_schedule_and_checkpoints_are_measured_as_cut(
    stories_model: Path, stories_text: Path
) -> None:
    plain, _, _ = _run(stories_model, stories_text, in_loop=False)
    looped, refit, measure = _run(stories_model, stories_text, in_loop=True)
    assert refit is not None and refit.refits == SETTINGS["steps"] - 1  # after every step but the last
    structures = [c.structure.to_dict() for c in looped.checkpoints]
    assert structures != [c.structure.to_dict() for c in plain.checkpoints]  # the next steps saw the refit
    assert [c.target for c in looped.checkpoints] == [0.3, 0.5]
    for record in looped.checkpoints:  # the figure of the weights as cut, as a fresh slice of the dense model
        cut = gisp.materialize(looped, record.target).model.eval()
        assert record.metrics["perplexity"] == pytest.approx(measure(cut)["perplexity"], rel=1e-5)
        assert abs(record.sparsity - record.target) < 0.01


def test_a_stopped_in_loop_run_resumes_to_the_same_trajectory(stories_model: Path, stories_text: Path) -> None:
    whole, _, _ = _run(stories_model, stories_text, in_loop=True)
    stopped, _, _ = _run(stories_model, stories_text, in_loop=True, stop_after=2)
    assert stopped.completed_steps == 2
    resumed, _, _ = _run(stories_model, stories_text, in_loop=True, resume=stopped)
    assert resumed.completed_steps == whole.completed_steps == SETTINGS["steps"]
    assert [c.structure.to_dict() for c in resumed.checkpoints] == [c.structure.to_dict() for c in whole.checkpoints]
    assert [c.metrics for c in resumed.checkpoints] == [c.metrics for c in whole.checkpoints]


@pytest.mark.parametrize(
    "change",
    [
        dict(reconstruct="none"),
        dict(reconstruct="bias"),
        dict(method="wanda-sp"),
        dict(method="tyr"),
        dict(steps=1),
    ],
)
def test_settings_that_cannot_refit_between_steps_are_refused(change: dict) -> None:
    with pytest.raises(ConfigError) as error:
        PruneSettings(targets=[0.3], reconstruct_in_loop=True, **change)
    assert error.value.field == "reconstruct_in_loop"
