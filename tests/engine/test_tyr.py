"""The `tyr` method: local ladders with weight update, exact-sparsity search, export of the
re-solved weights, determinism, settings; small search budgets throughout."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load

from gisp.config import PruneSettings
from gisp.errors import ConfigError, PruningStopped
from gisp.export import export_all, load_pruned, reconstruction_file
from gisp.methods.search import SearchContext
from gisp.objectives import get_objective
from gisp.objectives.base import pad_token_id
from gisp.pruner import PruneObserver, new_trajectory, prune
from gisp.trajectory import Trajectory
from gisp.tyr.allocate import TyrSession, uniform_counts
from gisp.tyr.local import ladder
from gisp.tyr.search import Space, evolve, mutate
from gisp.tyr.supernet import LevelProjection
from tests.engine.test_export import LOAD_WITHOUT_GISP
from tests.engine.tiny import random_examples, tiny_model

SMALL = dict(
    method="tyr",
    batch_size=4,
    tyr_levels=5,
    tyr_rounds=2,
    tyr_population=4,
    tyr_offspring=6,
    tyr_generations=3,
    tyr_stage_samples=[2, 8],
    tyr_stage_keep=[3],
    tyr_update_rounds=4,
)


class Events(PruneObserver):
    """Search progress, and the checkpoints' tensors stored as the CLI stores them (in `folder`)."""

    def __init__(self, stop_after_generations: int | None = None, folder: Path | None = None) -> None:
        self.progress: list = []
        self.stop_after = stop_after_generations
        self.folder = folder
        self.tensors: dict[float, dict] = {}

    def on_reconstructed(self, record, tensors: bytes, trajectory) -> None:
        self.tensors[record.target] = load(tensors)
        if self.folder is not None:
            path = reconstruction_file(self.folder, record)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tensors)

    def on_search(self, progress) -> None:
        self.progress.append(progress)

    def should_stop(self) -> bool:
        done = sum(1 for p in self.progress if p.phase == "search")
        return self.stop_after is not None and done >= self.stop_after


def run_tyr(family: str = "llama-gqa", observer: Events | None = None, **kw) -> tuple[Trajectory, object, Events]:
    loaded = tiny_model(family)
    settings = PruneSettings(targets=kw.pop("targets", [0.3, 0.5]), **{**SMALL, **kw})
    trajectory = new_trajectory(loaded, settings, "0" * 64)
    observer = observer or Events()
    return prune(loaded, random_examples(8, 16), settings, trajectory, observer), loaded, observer


def test_ladder_rungs_are_nested_and_resolve_better_than_cutting() -> None:
    torch.manual_seed(0)
    x = torch.randn(400, 12, dtype=torch.float64) @ torch.randn(12, 12, dtype=torch.float64)
    dense = torch.randn(5, 12)
    gram = x.T @ x
    rungs = ladder(gram, dense, 2, [6, 4, 2, 0], damp=1e-6, rounds=3)
    assert torch.equal(rungs[6].weight, dense) and rungs[6].kept == list(range(6))
    assert set(rungs[2].kept) <= set(rungs[4].kept) <= set(rungs[6].kept) and rungs[0].kept == []
    target = x @ dense.T.double()
    for count in (4, 2):
        cols = [u * 2 + i for u in rungs[count].kept for i in range(2)]
        resolved = (x[:, cols] @ rungs[count].weight.T.double() - target).pow(2).sum()
        cut = (x[:, cols] @ dense[:, cols].T.double() - target).pow(2).sum()
        assert resolved < cut


def test_every_mutation_keeps_the_removed_parameter_count() -> None:
    spec = tiny_model("llama-gqa").adapter.spec
    counts = uniform_counts(spec, 0.4, set())
    blocks = sorted(counts)
    step = {"attn": 1, "mlp": 2}
    levels = {b: {counts[b] - o * step[b[1]] for o in range(-2, 3)} for b in blocks}
    units = {"attn": spec.num_kv_heads, "mlp": spec.intermediate_size}

    def valid(i: int, offset: int) -> bool:
        b = blocks[i]
        count = counts[b] - offset * step[b[1]]
        return count in levels[b] and 0 <= count <= units[b[1]]

    trade = step["attn"] * spec.unit_params("attn") // (step["mlp"] * spec.unit_params("mlp"))
    space = Space(kinds=tuple(b[1] for b in blocks), valid=valid, trade=trade)

    def removed(genome: tuple[int, ...]) -> int:
        kept = {b: counts[b] - o * step[b[1]] for b, o in zip(blocks, genome, strict=True)}
        return sum((units[b[1]] - kept[b]) * spec.unit_params(b[1]) for b in blocks)

    start = tuple(0 for _ in blocks)
    rng, genome, moved = random.Random(0), start, 0
    for _ in range(300):
        child = mutate(genome, space, rng, rng.randint(1, 3))
        assert removed(child) == removed(start) and all(valid(i, o) for i, o in enumerate(child))
        moved += child != genome
        genome = child
    assert moved > 100
    assert abs(removed(start) - 0.4 * spec.prunable_params) <= spec.unit_params("mlp") / 2


def test_zero_generations_is_the_local_pruner_alone() -> None:
    space = Space(kinds=("mlp", "mlp", "mlp"), valid=lambda i, o: abs(o) <= 2)
    scored: list = []

    def score(genome, sequences):
        scored.append(genome)
        return -float(sum(abs(o) for o in genome))  # any mutant would score better than the start

    assert evolve((0, 0, 0), space, score, 4, 4, 0, [2, 8], [2], seed=0) == ([(0, 0, 0)], [0.0])
    assert scored == [(0, 0, 0)]


def test_runs_exact_deterministic_and_reports_progress() -> None:
    first, _, events = run_tyr()
    second, _, again = run_tyr()
    spec = first.arch
    for record in first.checkpoints:
        removed = spec.prunable_params - record.structure.kept_params(spec)
        assert abs(removed - record.target * spec.prunable_params) <= spec.unit_params("mlp") / 2
        assert record.reconstruction == "tyr" and events.tensors[record.target]  # re-solved projections
    for a, b in zip(first.checkpoints, second.checkpoints, strict=True):
        assert a.structure == b.structure and a.loss == b.loss
        assert a.reconstruction_sha256 == b.reconstruction_sha256  # the same bytes
    phases = {(p.target, p.round, p.phase) for p in events.progress}
    assert (0.5, 2, "ladder") in phases and (0.5, 2, "search") in phases
    searches = [p for p in events.progress if p.phase == "search" and p.target == 0.3 and p.round == 1]
    assert [p.done for p in searches] == [1, 2, 3]
    assert all(b.best_fitness <= a.best_fitness for a, b in zip(searches, searches[1:], strict=False))
    assert first.completed_steps == first.total_steps == 2


def test_stop_between_generations_and_resume_with_the_next_target(tmp_path: Path) -> None:
    loaded = tiny_model("llama-gqa")
    settings = PruneSettings(targets=[0.3, 0.5], **SMALL)
    trajectory = new_trajectory(loaded, settings, "0" * 64)
    events = Events(stop_after_generations=8)  # during the second target's first round
    with pytest.raises(PruningStopped, match="generation"):
        prune(loaded, random_examples(8, 16), settings, trajectory, events)
    assert trajectory.completed_steps == 1 and [c.target for c in trajectory.checkpoints] == [0.3]
    trajectory.save(tmp_path / "trajectory.json")
    resumed = Trajectory.load(tmp_path / "trajectory.json")
    prune(tiny_model("llama-gqa"), random_examples(8, 16), settings, resumed)
    reference, _, _ = run_tyr()
    assert [c.structure for c in resumed.checkpoints] == [c.structure for c in reference.checkpoints]


@contextmanager
def candidate(loaded, record, tensors: dict):
    """Swap each pruned block's output projection for (kept columns, the checkpoint's weight)."""
    adapter, spec, swaps = loaded.adapter, loaded.adapter.spec, []
    for kind in ("attn", "mlp"):
        size = adapter.output_unit_size(kind)
        for layer, kept in enumerate(record.structure.kept(kind)):
            if len(kept) == spec.units(kind):
                continue
            parent = adapter.layers(loaded.model)[layer]
            parent = parent.self_attn if kind == "attn" else parent.mlp
            attr = "o_proj" if kind == "attn" else "down_proj"
            original = getattr(parent, attr)
            name = f"model.layers.{layer}.{'self_attn.o_proj' if kind == 'attn' else 'mlp.down_proj'}.weight"
            weight = tensors.get(name, torch.zeros(original.out_features, 0))
            columns = torch.tensor([u * size + i for u in kept for i in range(size)], dtype=torch.long)
            setattr(parent, attr, LevelProjection(columns, weight, original.bias))
            swaps.append((parent, attr, original))
    try:
        yield
    finally:
        for parent, attr, original in swaps:
            setattr(parent, attr, original)


def test_export_carries_the_resolved_weights(tmp_path: Path) -> None:
    trajectory, loaded, events = run_tyr(family="llama-bias", targets=[0.3, 0.5], observer=Events(folder=tmp_path))
    trajectory.base_model = str(tmp_path / "base")
    loaded.model.save_pretrained(trajectory.base_model)
    loaded.tokenizer.save_pretrained(trajectory.base_model)
    trajectory.save(tmp_path / "trajectory.json")
    reloaded = Trajectory.load(tmp_path / "trajectory.json")
    folders = export_all(reloaded, tmp_path / "out", tensors_dir=tmp_path)
    ids = torch.tensor([[1, 5, 9, 14, 20, 33]])
    for record, folder in zip(trajectory.checkpoints, folders, strict=True):
        with torch.no_grad():
            exported = load_pruned(folder)(ids).logits
            with candidate(loaded, record, events.tensors[record.target]):  # the dense model as the candidate
                searched = loaded.model(ids).logits
        assert torch.allclose(exported, searched, atol=1e-5)
    folder = folders[-1]
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_GISP, str(folder), "[[1, 5, 9, 14]]"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("tyr_stage_keep", dict(tyr_stage_samples=[4, 16, 64], tyr_stage_keep=[2])),
        ("tyr_stage_samples", dict(tyr_stage_samples=[16, 4], tyr_stage_keep=[2])),
        ("tyr_levels", dict(tyr_levels=2)),
        ("tyr_step", dict(tyr_step=0.0)),
        ("tyr_population", dict(tyr_population=1)),
        ("tyr_start", dict(tyr_start="best")),
    ],
)
def test_bad_tyr_settings_name_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(ConfigError) as info:
        PruneSettings(targets=[0.5], method="tyr", **kwargs)
    assert info.value.field == field


# ------------------------------------------------------------------ stories260K (real weights and text)


@pytest.mark.integration
def test_search_beats_the_uniform_allocation_on_stories(stories_model: Path, stories_text: Path) -> None:
    from gisp.run import prepare

    settings = PruneSettings(
        targets=[0.5],
        samples=16,
        seq_len=64,
        heldout=0,
        **{**SMALL, "tyr_step": 0.0625, "tyr_generations": 4, "tyr_offspring": 8, "tyr_stage_samples": [4, 16]},
    )
    prepared = prepare(str(stories_model), stories_text, settings)
    loaded = prepared.loaded
    objective = get_objective(settings.objective)
    batches = objective.batches(prepared.calibration, settings.batch_size, pad_token_id(loaded.tokenizer))
    device = torch.device("cpu")
    ctx = SearchContext(
        loaded.model, loaded.adapter, objective, batches, device, settings, 0, set(), Events().on_search, lambda: False
    )
    searched = TyrSession(ctx).search(0.5)
    uniform_settings = PruneSettings.from_dict({**settings.to_dict(), "tyr_generations": 0})
    uniform = TyrSession(SearchContext(**{**ctx.__dict__, "settings": uniform_settings})).search(0.5)
    spec = loaded.adapter.spec
    assert searched.structure.kept_params(spec) == uniform.structure.kept_params(spec)  # the same sparsity
    assert searched.fitness < uniform.fitness


@pytest.mark.integration
def test_cli_tyr_checkpoint_exports_to_gguf_that_llamacpp_runs(
    stories_model: Path, stories_text: Path, tmp_path: Path, capsys
) -> None:
    from gisp.cli import main
    from gisp.eval import llamacpp
    from gisp.exporters import export

    out = tmp_path / "cli"
    args = ["prune", str(stories_model), "--data", str(stories_text), "--targets", "0.4", "--method", "tyr"]
    args += ["--samples", "8", "--seq-len", "64", "--tyr-rounds", "1", "--tyr-generations", "2", "--tyr-offspring", "4"]
    args += ["--tyr-stage-samples", "2,8", "--tyr-stage-keep", "2", "--tyr-levels", "5", "--out", str(out), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checkpoints"][0]["reconstruction"] == "tyr"
    folder = out / "sparsity-0.40"
    assert (out / "reconstruction" / "sparsity-0.40.safetensors").is_file()
    export(folder, tmp_path / "m.gguf", "gguf", dtype="f32")
    if not llamacpp.available():
        pytest.skip("llama.cpp is not installed: the GGUF file was written but not run")
    result = llamacpp.agreement(
        tmp_path / "m.gguf", folder, ["Once upon a time, there was a little girl."], n_ctx=128, exact=True
    )
    assert result.top1 == 1.0 and result.max_abs_diff < 1e-3, result
