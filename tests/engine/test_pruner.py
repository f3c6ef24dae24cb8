"""The schedule: exact targets, nestedness, importance recomputed on the pruned model, resume."""

from __future__ import annotations

import re

import pytest

from gisp.config import PruneSettings
from gisp.errors import ConfigError, PruningStopped
from gisp.pruner import PruneObserver, StepReport, new_trajectory, prune
from gisp.schedule import nearest_count
from gisp.structure import Structure
from gisp.trajectory import Trajectory
from tests.engine.tiny import FAMILIES, random_examples, tiny_model

TARGETS = [0.1, 0.25, 0.5, 0.7]


def run_tiny(family: str, steps: int = 4, **kw) -> Trajectory:
    loaded = tiny_model(family)
    settings = PruneSettings(targets=kw.pop("targets", TARGETS), steps=steps, batch_size=4, **kw)
    trajectory = new_trajectory(loaded, settings, "0" * 64)
    return prune(loaded, random_examples(8, 16), settings, trajectory)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_targets_hit_within_one_unit_and_nested(family: str) -> None:
    trajectory = run_tiny(family)
    spec = trajectory.arch
    biggest_unit = max(spec.unit_params("attn"), spec.unit_params("mlp"))
    assert [r.target for r in trajectory.checkpoints] == TARGETS
    previous = Structure.full(spec)
    for record in trajectory.checkpoints:
        removed = spec.prunable_params - record.structure.kept_params(spec)
        assert abs(removed - record.target * spec.prunable_params) <= biggest_unit / 2
        assert record.structure.is_subset_of(previous)
        assert record.parameter_count == record.structure.total_params(spec)
        previous = record.structure
    assert trajectory.completed_steps == trajectory.total_steps == 4
    assert abs(trajectory.structure.sparsity(spec) - 0.7) * spec.prunable_params <= biggest_unit / 2


def test_nearest_count_picks_the_closest_prefix() -> None:
    assert nearest_count([10, 10, 10], 0, 14) == 1
    assert nearest_count([10, 10, 10], 0, 16) == 2
    assert nearest_count([10, 10, 10], 0, 100) == 3
    assert nearest_count([10, 10, 10], 5, 14, start=1) == 1  # never fewer than start


def test_trajectory_round_trips_through_json(tmp_path) -> None:
    trajectory = run_tiny("llama-gqa", steps=2, targets=[0.3])
    trajectory.save(tmp_path / "t.json")
    loaded = Trajectory.load(tmp_path / "t.json")
    assert loaded.to_dict() == trajectory.to_dict()
    assert loaded.checkpoint(0.3).structure.attn == trajectory.checkpoint(0.3).structure.attn


@pytest.mark.parametrize("importance", ["taylor", "fisher"])
def test_importance_is_recomputed_on_the_pruned_model(importance: str) -> None:
    """Iterating must differ from ranking once: with 8 steps the 0.7 structure is not the one-shot one."""
    iterative = run_tiny("llama-gqa", steps=8, targets=[0.7], importance=importance).checkpoints[0].structure
    oneshot = run_tiny("llama-gqa", steps=8, targets=[0.7], importance=importance, method="oneshot")
    assert iterative.to_dict() != oneshot.checkpoints[0].structure.to_dict()


def test_default_importance_follows_the_objective() -> None:
    assert PruneSettings(targets=[0.2]).importance == "fisher"
    assert PruneSettings(targets=[0.2], objective="margin").importance == "taylor"
    assert PruneSettings(targets=[0.2], objective="margin", importance="fisher").importance == "fisher"


class StopAfter(PruneObserver):
    def __init__(self, steps: int) -> None:
        self.steps, self.saved = steps, None

    def should_stop(self) -> bool:
        return self.saved is not None and self.saved["completed_steps"] >= self.steps

    def on_step(self, report: StepReport, trajectory: Trajectory) -> None:
        self.saved = trajectory.to_dict()


def test_resume_after_stop_gives_the_same_checkpoints() -> None:
    settings = PruneSettings(targets=[0.2, 0.5], steps=5, batch_size=4)
    examples = random_examples(8, 16)
    uninterrupted = new_trajectory(tiny_model("qwen2"), settings, "0" * 64)
    prune(tiny_model("qwen2"), examples, settings, uninterrupted)

    observer = StopAfter(3)
    with pytest.raises(PruningStopped):
        prune(
            tiny_model("qwen2"), examples, settings, new_trajectory(tiny_model("qwen2"), settings, "0" * 64), observer
        )
    partial = Trajectory.from_dict(observer.saved)
    assert partial.completed_steps == 3 and len(partial.checkpoints) == 1
    resumed = prune(tiny_model("qwen2"), examples, settings, partial)  # a fresh base model, as after a crash
    assert [c.structure.to_dict() for c in resumed.checkpoints] == [
        c.structure.to_dict() for c in uninterrupted.checkpoints
    ]


def test_protected_layers_stay_whole_and_cap_sparsity() -> None:
    trajectory = run_tiny("llama-gqa", targets=[0.4], protect_layers=[0])
    structure = trajectory.checkpoints[0].structure
    assert len(structure.attn[0]) == 2 and len(structure.mlp[0]) == 24
    with pytest.raises(ConfigError, match="unreachable"):
        run_tiny("llama-gqa", targets=[0.9], protect_layers=[0, 1])


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("targets", {"targets": [1.2]}),
        ("targets", {"targets": [0.0]}),
        ("steps", {"targets": [0.2], "steps": 0}),
        ("objective", {"targets": [0.2], "objective": "nope"}),
        ("normalization", {"targets": [0.2], "normalization": "nope"}),
        ("importance", {"targets": [0.2], "importance": "nope"}),
        ("method", {"targets": [0.2], "method": "nope"}),
    ],
)
def test_bad_settings_name_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(ConfigError) as info:
        PruneSettings(**kwargs)
    assert info.value.field == field


class StopOnCall(PruneObserver):
    """Says stop from its `n`-th question on: with n=2, during the first step (the first question
    is the one before step 1)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls, self.steps = n, 0, 0

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls >= self.n

    def on_step(self, report: StepReport, trajectory: Trajectory) -> None:
        self.steps += 1


def test_a_stop_is_heard_inside_a_step_not_only_between_steps() -> None:
    loaded = tiny_model("llama-gqa")
    settings = PruneSettings(targets=[0.5], steps=4, batch_size=2)
    observer = StopOnCall(2)
    with pytest.raises(PruningStopped, match="scoring"):
        prune(loaded, random_examples(8, 16), settings, new_trajectory(loaded, settings, "0" * 64), observer)
    assert observer.steps == 0  # stopped while scoring step 1's batches


def test_a_huge_step_count_materializes_nothing_of_its_size() -> None:
    """steps is the client's number: the schedule is computed per step, never built as a list."""
    import tracemalloc

    loaded = tiny_model("llama-gqa")
    settings = PruneSettings(targets=[0.5], steps=4, batch_size=4)
    trajectory = new_trajectory(loaded, settings, "0" * 64)
    trajectory.total_steps = 3_000_000  # as a client's `steps` would set it (service bounds aside)
    examples = random_examples(8, 16)
    tracemalloc.start()
    try:
        with pytest.raises(PruningStopped):
            prune(loaded, examples, settings, trajectory, StopAfter(1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert trajectory.completed_steps == 1
    assert peak < 20 * 1024 * 1024  # a list of 3M goals alone would be ~90 MB


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": 2**63}, "seed must be at most 9223372036854775807"),
        ({"steps": 10**12}, "steps must be at most 4096"),
        ({"targets": [0.01] * 65}, "targets takes at most 64 values, not 65"),
        ({"targets": [0.2, 0.9999999]}, "target 0.9999999 rounds to 1"),
    ],
)
def test_settings_refuse_what_is_out_of_bounds_as_sent(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        PruneSettings(**{"targets": [0.2], **change})
    assert PruneSettings(targets=[0.2], seed=2**63 - 1, steps=4096).seed == 2**63 - 1


def test_min_kv_groups_keeps_attention_in_every_layer_until_a_target_needs_it() -> None:
    free = run_tiny("llama-gqa", targets=[0.7, 0.97], steps=4)
    assert any(not kept for kept in free.checkpoints[0].structure.attn)  # without it a layer is emptied
    floored = run_tiny("llama-gqa", targets=[0.7, 0.97], steps=4, min_kv_groups=1)
    assert all(kept for kept in floored.checkpoints[0].structure.attn)
    assert any(not kept for kept in floored.checkpoints[1].structure.attn)  # 0.97 needs the deferred ones
    spec = floored.arch
    biggest_unit = max(spec.unit_params("attn"), spec.unit_params("mlp"))
    for record in floored.checkpoints:  # the targets are still hit
        removed = spec.prunable_params - record.structure.kept_params(spec)
        assert abs(removed - record.target * spec.prunable_params) <= biggest_unit / 2


def test_defer_below_floor_moves_only_the_units_under_the_floor() -> None:
    from gisp.schedule import defer_below_floor
    from gisp.structure import Unit

    structure = Structure(attn=[[0, 1], [0, 1, 2]], mlp=[[0, 1], [0]])
    order = [Unit(0, "attn", 0), Unit(0, "attn", 1), Unit(1, "mlp", 0), Unit(1, "attn", 2), Unit(1, "attn", 0)]
    assert defer_below_floor(order, structure, 0) == order
    assert defer_below_floor(order, structure, 1) == [order[0], order[2], order[3], order[4], order[1]]
    assert defer_below_floor(order, structure, 2) == [order[2], order[3], order[0], order[1], order[4]]
