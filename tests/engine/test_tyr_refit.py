"""`tyr_refit stage`: the structures tyr's search chose, refit by the reconstruction stage from the
dense weights (as every ranking method's checkpoints are), instead of the ladder's own re-solve.
On stories260K (real weights and text), small search budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gisp.config import PruneSettings
from gisp.errors import ConfigError
from gisp.export import export_all, load_pruned
from gisp.loading import load_model
from gisp.pruner import new_trajectory
from gisp.reconstruction.stage import reconstruct_checkpoints
from gisp.reconstruction.tensors import load_tensors, reconstructed_view, reconstruction_file
from gisp.run import run
from gisp.structure import Structure, is_nested
from gisp.trajectory import CheckpointRecord, Trajectory
from tests.conftest import shared_path
from tests.engine.test_tyr import SMALL
from tests.engine.tiny import random_examples, tiny_model

TARGETS = [0.3, 0.5]


def _run(model: Path, text: Path, folder: Path, **kw) -> Trajectory:
    settings = PruneSettings(targets=TARGETS, samples=16, seq_len=64, heldout=4, **{**SMALL, **kw})
    trajectory, _ = run(str(model), text, settings, reconstruction_dir=folder)
    trajectory.save(folder / "trajectory.json")
    return trajectory


def _widths(trajectory: Trajectory) -> list:
    return [r.structure.layer_widths() for r in sorted(trajectory.checkpoints, key=lambda r: r.target)]


@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory) -> Trajectory:
    model, text = shared_path("models", "stories260K"), shared_path("data", "tinystories", "tinystories_val.txt")
    return _run(model, text, tmp_path_factory.mktemp("ladder"))


@pytest.mark.integration
def test_the_stage_refits_the_searched_structures(
    stories_model: Path, stories_text: Path, ladder_run: Trajectory, tmp_path: Path
) -> None:
    # unjudged (tyr_finalists 0), the search's best goes to the stage as the ladder run keeps it
    staged = _run(
        stories_model, stories_text, tmp_path, tyr_refit="stage", reconstruct="lstsq-anchored", tyr_finalists=0
    )
    assert _widths(staged) == _widths(ladder_run)  # the search does not depend on the refit
    assert [r.structure for r in staged.checkpoints] == [r.structure for r in ladder_run.checkpoints]
    assert all(r.reconstruction == "tyr" for r in ladder_run.checkpoints)
    for record in staged.checkpoints:
        assert record.reconstruction == "lstsq-anchored" or record.reconstruction_rejected, record
        assert record.unreconstructed_metrics["perplexity"] > 0  # measured as cut, before the refit
        if record.reconstruction is not None:
            assert record.metrics["perplexity"] != record.unreconstructed_metrics["perplexity"]
            assert reconstruction_file(tmp_path, record).is_file()
    assert any(r.reconstruction is not None for r in staged.checkpoints)
    # the downloaded folder computes what the stage measured
    folders = export_all(staged, tmp_path / "out", tensors_dir=tmp_path)
    loaded = load_model(str(stories_model))
    ids = torch.tensor([[1, 45, 99, 140, 200, 33, 7]])
    for record, folder in zip(sorted(staged.checkpoints, key=lambda r: r.target), folders, strict=True):
        if record.reconstruction is None:
            continue
        tensors = load_tensors(reconstruction_file(tmp_path, record))
        with torch.no_grad(), reconstructed_view(loaded.model, loaded.adapter, record.structure, tensors):
            expected = loaded.model(ids).logits
        with torch.no_grad():
            assert torch.allclose(load_pruned(folder)(ids).logits, expected, atol=1e-4)


@pytest.mark.integration
def test_a_selecting_refit_keeps_each_layers_searched_width(
    stories_model: Path, stories_text: Path, ladder_run: Trajectory, tmp_path: Path
) -> None:
    """The default refit picks which units go inside a layer; tyr's checkpoints are not nested, so
    no checkpoint may be held inside the one before: each keeps the widths the search chose."""
    staged = _run(stories_model, stories_text, tmp_path, tyr_refit="stage", tyr_finalists=0)
    assert staged.settings["reconstruct"] == "lstsq-select-anchored"
    assert _widths(staged) == _widths(ladder_run)


def test_tyr_refit_names_the_field() -> None:
    assert PruneSettings(targets=[0.5], method="tyr").tyr_refit == "ladder"
    with pytest.raises(ConfigError) as info:
        PruneSettings(targets=[0.5], method="tyr", tyr_refit="both")
    assert info.value.field == "tyr_refit"


def test_a_selecting_refit_never_holds_a_search_checkpoint_inside_the_one_before() -> None:
    """Two hand-made checkpoints that are not nested (the sparser keeps more of layer 0): a
    selecting refit that treated the family as nested would offer the second only what the first
    kept in layer 0, and its width there would shrink."""
    loaded = tiny_model("llama-gqa")
    spec = loaded.adapter.spec
    settings = PruneSettings(targets=[0.3, 0.5], method="tyr", tyr_refit="stage", reconstruct="lstsq-select")
    trajectory = new_trajectory(loaded, settings, "0" * 64)
    channels = spec.intermediate_size
    lighter = Structure(attn=[[0, 1]] * 3, mlp=[list(range(channels // 2)), list(range(channels)), list(range(10))])
    heavier = Structure(attn=[[0, 1]] * 3, mlp=[list(range(channels)), list(range(4)), list(range(4))])
    assert lighter.kept_params(spec) > heavier.kept_params(spec) and not is_nested([lighter, heavier])
    for step, (target, structure) in enumerate(((0.3, lighter), (0.5, heavier)), 1):
        trajectory.checkpoints.append(CheckpointRecord.of(structure, spec, target, step, 0.0))
    reconstruct_checkpoints(loaded, random_examples(16, 24), settings, trajectory, guard=False)
    assert [r.structure.layer_widths() for r in trajectory.checkpoints] == [
        lighter.layer_widths(),
        heavier.layer_widths(),
    ]
    assert all(r.reconstruction == "lstsq-select" for r in trajectory.checkpoints)
