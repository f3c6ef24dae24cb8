"""The stage's end-to-end guard on the real stories260K weights: a refit that raises the
objective's loss on the held-back calibration sequences is rejected (the checkpoint keeps the
weights as cut, says why, warns), one that lowers it is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gisp
from gisp.config import PruneSettings
from gisp.eval.perplexity import heldout_metrics
from gisp.objectives.base import pad_token_id
from gisp.pruner import new_trajectory, prune
from gisp.reconstruction import Reconstruction, Refit
from gisp.reconstruction import stage as stage_module
from gisp.reconstruction.base import ProjectionStats
from gisp.reconstruction.builtin import cut_weight
from gisp.run import prepare
from tests.engine.test_reconstruction import Keep

pytestmark = pytest.mark.integration


class Harmful(Reconstruction):
    """The weights as cut, halved: every projection's output shrinks, which the model pays for."""

    name = "lstsq"  # what the settings (and the record) call it; the test swaps the variant in

    def refit(self, stats: ProjectionStats) -> Refit:
        return Refit(stats.keep, cut_weight(stats, stats.keep) * 0.5, None)


def pruned_stories(stories_model: Path, stories_text: Path):
    settings = PruneSettings(targets=[0.4], steps=2, samples=16, seq_len=128, heldout=8, reconstruct="lstsq")
    prepared = prepare(str(stories_model), stories_text, settings)
    loaded = prepared.loaded
    pad = pad_token_id(loaded.tokenizer)

    def measure(model: torch.nn.Module) -> dict[str, float]:
        return heldout_metrics(model, prepared.heldout, pad)

    trajectory = new_trajectory(loaded, settings, prepared.data_sha256)
    prune(loaded, prepared.calibration, settings, trajectory, None, measure, register=False)
    return settings, prepared, trajectory, measure


def test_a_harmful_refit_is_rejected_and_a_helpful_one_kept(
    stories_model: Path, stories_text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, prepared, trajectory, measure = pruned_stories(stories_model, stories_text)
    dense = gisp.load_model(str(stories_model))
    cut_metrics = dict(trajectory.checkpoints[0].metrics)

    # made to hurt: rejected, registered with the weights as cut, the reason carries both losses
    monkeypatch.setattr(stage_module, "get_reconstruction", lambda name: Harmful())
    harmed, observer = _copy(trajectory), Keep()
    stage_module.reconstruct_checkpoints(dense, prepared.calibration, settings, harmed, observer, measure)
    record = harmed.checkpoints[0]
    assert record.reconstruction is None and record.reconstruction_sha256 is None
    assert record.reconstruction_rejected and "raises the perplexity loss" in record.reconstruction_rejected
    assert record.metrics == record.unreconstructed_metrics == cut_metrics
    assert observer.warnings == [record.reconstruction_rejected] and observer.registered == [record]
    assert not observer.tensors
    refit_loss, cut_loss = (
        float(v) for v in record.reconstruction_rejected.split("(")[1].split(" with")[0].split(" vs ")
    )
    assert refit_loss > cut_loss
    # a resume does not redo the decision; it registers the checkpoint again
    again = Keep()
    stage_module.reconstruct_checkpoints(dense, prepared.calibration, settings, harmed, again, measure)
    assert again.registered == [record] and not again.progress
    # the same harmful refit, unguarded, is what the guard kept the user from
    unguarded = _copy(trajectory)
    stage_module.reconstruct_checkpoints(dense, prepared.calibration, settings, unguarded, Keep(), measure, guard=False)
    assert unguarded.checkpoints[0].metrics["perplexity"] > cut_metrics["perplexity"]

    # the real refit helps on this model: kept, and better on the held-out text than the cut weights
    monkeypatch.undo()
    helped, observer = _copy(trajectory), Keep()
    stage_module.reconstruct_checkpoints(dense, prepared.calibration, settings, helped, observer, measure)
    record = helped.checkpoints[0]
    assert record.reconstruction == "lstsq" and record.reconstruction_rejected is None
    assert record.metrics["perplexity"] < record.unreconstructed_metrics["perplexity"] == cut_metrics["perplexity"]
    assert not [w for w in observer.warnings if "raises" in w] and observer.tensors


def _copy(trajectory):
    return type(trajectory).from_dict(trajectory.to_dict())
