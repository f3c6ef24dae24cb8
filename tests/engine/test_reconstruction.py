"""The reconstruction stage on tiny random models: exact on an unpruned model, lower error on a
pruned one, deterministic bytes, the exported folder matches without the package, clear errors."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch

from gisp.config import PruneSettings
from gisp.errors import ConfigError, ReconstructionError
from gisp.export import export_checkpoint
from gisp.objectives import get_objective
from gisp.pruner import PruneObserver, new_trajectory, prune
from gisp.reconstruction import get_reconstruction
from gisp.reconstruction.stage import reconstruct_checkpoints
from gisp.reconstruction.stream import reconstruct
from gisp.reconstruction.tensors import reconstructed_view, tensors_bytes
from gisp.structure import Structure
from gisp.trajectory import CheckpointRecord
from tests.engine.test_export import LOAD_WITHOUT_GISP
from tests.engine.tiny import VOCAB, random_examples, tiny_model

EXAMPLES = random_examples(16, 24)


def batches(loaded, examples=EXAMPLES):
    return get_objective("perplexity").batches(examples, 8, 0)


def pruned_structure(family: str, target: float = 0.5) -> tuple[PruneSettings, Structure]:
    loaded = tiny_model(family)
    settings = PruneSettings(targets=[target], steps=2, batch_size=8)
    trajectory = prune(loaded, EXAMPLES, settings, new_trajectory(loaded, settings, "0" * 64))
    return settings, trajectory.checkpoints[0].structure


@pytest.mark.parametrize(
    "variant,inputs", [("lstsq", False), ("lstsq-select", False), ("lstsq-select-anchored", False), ("lstsq", True)]
)
def test_tiny_lambda_on_an_unpruned_model_gives_back_the_dense_weights(variant: str, inputs: bool) -> None:
    loaded = tiny_model("llama-gqa")
    full = Structure.full(loaded.adapter.spec)
    variant_ = get_reconstruction(variant)
    result = reconstruct(loaded.model, loaded.adapter, full, batches(loaded), variant_, 1e-9, inputs=inputs)
    assert result.structure == full
    params = dict(loaded.model.named_parameters())
    refit = ("o_proj", "down_proj") + (("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj") if inputs else ())
    assert set(result.tensors) == {n for n in params if n.endswith(tuple(f"{m}.weight" for m in refit))}
    for name, value in result.tensors.items():
        assert torch.allclose(value, params[name], atol=1e-4), name


def _projection_errors(loaded, structure: Structure, tensors: dict | None) -> list[float]:
    """Per layer, the squared error of the pruned model's down_proj output against the dense one,
    with the pruned model fed its own hidden states (the stage's objective)."""
    from contextlib import ExitStack

    from gisp.masking import structure_masks, unit_masks

    model, adapter = loaded.model, loaded.adapter
    outputs: dict[str, list[torch.Tensor]] = {"dense": [], "pruned": []}
    layers = adapter.layers(model)
    for which in outputs:
        with torch.no_grad(), ExitStack() as stack:
            if which == "pruned":  # the view's hooks first, so the taps below see their outputs
                masks = structure_masks(adapter, Structure.full(adapter.spec), structure)
                stack.enter_context(unit_masks(model, adapter, masks))
                if tensors:
                    stack.enter_context(reconstructed_view(model, adapter, structure, tensors))
            handles = [
                module.register_forward_hook(lambda m, a, o, which=which: outputs[which].append(o))
                for layer in layers
                for module in (layer.self_attn.o_proj, layer.mlp.down_proj)
            ]
            for batch in batches(loaded):
                model(input_ids=batch.input_ids)
            for h in handles:
                h.remove()
    n = 2 * len(layers)  # o_proj and down_proj of each layer, per batch
    errors = [0.0] * len(layers)
    for i, (d, p) in enumerate(zip(outputs["dense"], outputs["pruned"], strict=True)):
        errors[(i % n) // 2] += float((d - p).pow(2).sum())
    return errors


@pytest.mark.parametrize(
    "variant,inputs",
    [("lstsq", False), ("lstsq-select", False), ("lstsq-anchored", False), ("bias", False), ("lstsq-anchored", True)],
)
def test_each_layer_fits_the_dense_outputs_better_after_than_before(variant: str, inputs: bool) -> None:
    settings, structure = pruned_structure("llama-gqa", 0.3)
    loaded = tiny_model("llama-gqa")
    before = _projection_errors(loaded, structure, None)
    variant_ = get_reconstruction(variant)
    result = reconstruct(loaded.model, loaded.adapter, structure, batches(loaded), variant_, 1e-2, inputs=inputs)
    after = _projection_errors(loaded, result.structure, result.tensors)
    assert sum(b > 0 for b in before) >= 2, structure  # layers the pruning touched (or fed other inputs)
    assert all(a < b for a, b in zip(after, before, strict=True) if b > 0), (before, after)


def test_reconstruction_is_deterministic_and_leaves_the_dense_model_alone() -> None:
    _, structure = pruned_structure("llama-mha")
    loaded = tiny_model("llama-mha")
    dense = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    first = reconstruct(loaded.model, loaded.adapter, structure, batches(loaded), get_reconstruction("lstsq"), 1e-2)
    again = reconstruct(loaded.model, loaded.adapter, structure, batches(loaded), get_reconstruction("lstsq"), 1e-2)
    assert tensors_bytes(first.tensors) == tensors_bytes(again.tensors)
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in dense.items())


class Keep(PruneObserver):
    def __init__(self) -> None:
        self.tensors: dict[float, bytes] = {}
        self.registered: list[CheckpointRecord] = []
        self.warnings: list[str] = []
        self.progress: list[tuple[int, int]] = []

    def on_reconstructed(self, record, tensors, trajectory) -> None:
        self.tensors[record.target] = tensors

    def on_checkpoint(self, record) -> None:
        self.registered.append(record)

    def on_warning(self, message: str) -> None:
        self.warnings.append(message)

    def on_reconstruction_progress(self, record, layers: int, total: int) -> None:
        self.progress.append((layers, total))


# every folder of a test in one fresh interpreter where `import gisp` fails (startup is the cost)
LOAD_MANY = LOAD_WITHOUT_GISP.replace(
    "model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()\n", ""
).replace(
    "    print(json.dumps(model(input_ids=ids).logits.tolist()))",
    "    for path in sys.argv[1].split(','):\n"
    "        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()\n"
    "        print(json.dumps(model(input_ids=ids).logits.tolist()))",
)


def load_many_without_gisp(paths: list[Path], ids: torch.Tensor) -> list[torch.Tensor]:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", LOAD_MANY, ",".join(map(str, paths)), json.dumps(ids.tolist())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.tensor(json.loads(line)) for line in done.stdout.strip().splitlines()[-len(paths) :]]


@pytest.mark.parametrize(
    "family,variant,inputs",
    [("llama-gqa", "lstsq-select", False), ("qwen2", "bias", False), ("qwen2", "lstsq-select-anchored", True)],
)
def test_exported_reconstructed_folder_matches_without_the_package(
    family: str, variant: str, inputs: bool, tmp_path: Path
) -> None:
    """With `inputs` the refit covers q/k/v and gate/up too (qwen2: with their biases kept)."""
    loaded = tiny_model(family)
    settings = PruneSettings(targets=[0.3, 0.6], steps=2, batch_size=8, reconstruct=variant, reconstruct_inputs=inputs)
    ids = torch.randint(4, VOCAB, (2, 12), generator=torch.Generator().manual_seed(3))

    def measure(model) -> dict[str, float]:
        return {"logit_sum": float(model(input_ids=ids).logits.double().sum())}

    trajectory = prune(loaded, EXAMPLES, settings, new_trajectory(loaded, settings, "0" * 64), None, measure, False)
    dense = tiny_model(family)
    observer = Keep()

    # the export is under test, not the guard (which may keep a random model's cut weights): unguarded
    reconstruct_checkpoints(dense, EXAMPLES, settings, trajectory, observer, measure, guard=False)
    assert [r.target for r in observer.registered] == [0.3, 0.6]
    assert observer.progress[-1] == (3, 3)
    small, large = trajectory.checkpoints
    assert large.structure.is_subset_of(small.structure)  # still nested
    paths = []
    for record in trajectory.checkpoints:
        assert record.reconstruction == variant and record.unreconstructed_metrics
        assert record.metrics != record.unreconstructed_metrics
        refit_inputs = any(n.endswith("q_proj.weight") for n in _load(observer, record))
        assert refit_inputs == inputs
        paths.append(tmp_path / record.name)
        (tmp_path / f"{record.name}.safetensors").write_bytes(observer.tensors[record.target])
        export_checkpoint(
            trajectory,
            record.target,
            paths[-1],
            base=tiny_model(family),
            tensors=tmp_path / f"{record.name}.safetensors",
        )
    for record, logits in zip(trajectory.checkpoints, load_many_without_gisp(paths, ids), strict=True):
        with torch.no_grad(), reconstructed_view(dense.model, dense.adapter, record.structure, _load(observer, record)):
            expected = dense.model(input_ids=ids).logits
        assert torch.allclose(logits, expected, atol=1e-4)
        assert abs(float(logits.double().sum()) - record.metrics["logit_sum"]) < 1e-2


def _load(observer: Keep, record: CheckpointRecord) -> dict:
    from safetensors.torch import load

    return load(observer.tensors[record.target])


def test_export_of_a_reconstructed_checkpoint_without_its_tensors_is_refused(tmp_path: Path) -> None:
    loaded = tiny_model("llama-gqa")
    settings = PruneSettings(targets=[0.4], steps=1, batch_size=8)
    trajectory = prune(loaded, EXAMPLES, settings, new_trajectory(loaded, settings, "0" * 64), register=False)
    reconstruct_checkpoints(tiny_model("llama-gqa"), EXAMPLES, settings, trajectory)
    with pytest.raises(ConfigError, match="tensors are needed"):
        export_checkpoint(trajectory, 0.4, tmp_path / "out", base=tiny_model("llama-gqa"))
    with pytest.raises(ConfigError, match="do not exist"):
        export_checkpoint(trajectory, 0.4, tmp_path / "out", base=tiny_model("llama-gqa"), tensors=tmp_path / "none")


@pytest.mark.parametrize("variant", ["lstsq", "lstsq-select"])
def test_too_few_tokens_warns_and_still_solves(variant: str, caplog: pytest.LogCaptureFixture) -> None:
    loaded = tiny_model("llama-gqa")  # o_proj inputs are 32 wide, down_proj 24
    few = random_examples(1, 10)
    _, structure = pruned_structure("llama-gqa", 0.3)
    warnings: list[str] = []
    from gisp.reconstruction.stream import Hooks

    with caplog.at_level(logging.WARNING, logger="gisp"):
        result = reconstruct(
            loaded.model,
            loaded.adapter,
            structure,
            batches(loaded, few),
            get_reconstruction(variant),
            0.0,  # no ridge term at all: a singular Gram matrix
            hooks=Hooks(warn=warnings.append),
        )
    assert any("layer 0 o_proj: 10 calibration tokens for 32 inputs" in w for w in warnings)
    assert all(torch.isfinite(t).all() for t in result.tensors.values())


def test_a_non_finite_layer_fails_naming_the_layer() -> None:
    loaded = tiny_model("llama-gqa")
    with torch.no_grad():
        loaded.model.model.layers[1].mlp.up_proj.weight[0, 0] = float("inf")  # a broken checkpoint file
    with pytest.raises(ReconstructionError, match="layer 1"):
        reconstruct(
            loaded.model,
            loaded.adapter,
            Structure.full(loaded.adapter.spec),
            batches(loaded),
            get_reconstruction("lstsq"),
            1e-2,
        )


def test_a_stop_asked_between_layers_stops_the_phase_and_keeps_nothing_half_done() -> None:
    from gisp.errors import PruningStopped

    loaded = tiny_model("llama-gqa")
    settings = PruneSettings(targets=[0.3, 0.6], steps=1, batch_size=8)
    trajectory = prune(loaded, EXAMPLES, settings, new_trajectory(loaded, settings, "0" * 64), register=False)

    class StopAfterALayer(Keep):
        def should_stop(self) -> bool:
            return bool(self.progress)

    observer = StopAfterALayer()
    with pytest.raises(PruningStopped, match="before layer 1"):
        reconstruct_checkpoints(tiny_model("llama-gqa"), EXAMPLES, settings, trajectory, observer)
    # one layer of the first of the guarded phase's two passes (the checked fit, then the kept one)
    assert observer.progress == [(1, 6)] and not observer.registered and not observer.tensors
    assert all(r.reconstruction is None for r in trajectory.checkpoints)  # a resume starts this one again


def test_bias_ignores_the_input_refit_that_is_on_by_default() -> None:
    loaded = tiny_model("llama-gqa")
    settings = PruneSettings(targets=[0.3], steps=2, batch_size=8, reconstruct="bias")
    assert settings.reconstruct_inputs  # the default
    trajectory = prune(loaded, EXAMPLES, settings, new_trajectory(loaded, settings, "0" * 64), None, None, False)
    observer = Keep()
    reconstruct_checkpoints(tiny_model("llama-gqa"), EXAMPLES, settings, trajectory, observer, None, guard=False)
    names = set(_load(observer, trajectory.checkpoints[0]))
    assert names and not any(n.endswith(("q_proj.weight", "gate_proj.weight")) for n in names)


@pytest.mark.parametrize("family", ["llama-gqa", "qwen2"])
def test_a_layer_with_every_kv_group_removed_is_measured_as_the_export_computes_it(family: str) -> None:
    """The view the stage measures a checkpoint through (and the guard judges it by) must compute
    what the compact model computes. A layer whose attention lost every KV group has no o_proj and
    so no refit tensor; the view once left that layer's dense attention in place, so the recorded
    metrics of such a checkpoint (common for gisp at 0.4-0.5: it empties late layers) were not
    those of the downloaded model."""
    from gisp.reconstruction.tensors import apply_tensors

    dense = tiny_model(family)
    spec = dense.adapter.spec
    full = Structure.full(spec)
    structure = Structure(
        attn=[list(range(spec.num_kv_heads)), [], [0]], mlp=[list(range(0, spec.intermediate_size, 2))] * 3
    )
    result = reconstruct(dense.model, dense.adapter, structure, batches(dense), get_reconstruction("lstsq"), 1e-2)
    assert not any(n.startswith("model.layers.1.self_attn") for n in result.tensors)  # nothing to refit there
    compact = tiny_model(family)
    compact.adapter.slice_model(compact.model, full, structure)
    apply_tensors(compact.model, result.tensors)
    ids = torch.randint(4, VOCAB, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = compact.model(input_ids=ids).logits
        with reconstructed_view(dense.model, dense.adapter, structure, result.tensors):
            viewed = dense.model(input_ids=ids).logits
        untouched = dense.model(input_ids=ids).logits
    assert torch.allclose(viewed, expected, atol=1e-5)
    assert not torch.allclose(untouched, expected, atol=1e-3)  # the view did change the model


def test_a_checkpoint_kept_as_cut_after_a_refit_one_exports_its_cut_weights(tmp_path: Path) -> None:
    """export_all slices nested checkpoints one from the next; a checkpoint the guard kept as cut
    must not inherit the refit weights of the one before it (it once did)."""
    from safetensors.torch import load

    from gisp.export import export_all, load_pruned, materialize
    from gisp.reconstruction.tensors import reconstruction_file

    loaded = tiny_model("llama-gqa")
    settings = PruneSettings(targets=[0.2, 0.4], steps=2, batch_size=8, reconstruct="lstsq")
    trajectory = prune(loaded, EXAMPLES, settings, new_trajectory(loaded, settings, "0" * 64), None, None, False)
    observer = Keep()
    reconstruct_checkpoints(tiny_model("llama-gqa"), EXAMPLES, settings, trajectory, observer, None, guard=False)
    small, large = trajectory.checkpoints
    refit = load(observer.tensors[small.target])
    dense = tiny_model("llama-gqa").model.model.layers[0].mlp.down_proj.weight[:, small.structure.mlp[0]]
    assert not torch.allclose(refit["model.layers.0.mlp.down_proj.weight"], dense)  # the refit changed weights
    reconstruction_file(tmp_path, small).parent.mkdir(parents=True)
    reconstruction_file(tmp_path, small).write_bytes(observer.tensors[small.target])
    # the guard's verdict, set by hand: whether it rejects a random model's refit is not ours to choose
    large.reconstruction, large.reconstruction_sha256, large.reconstruction_rejected = None, None, "rejected"
    base = tiny_model("llama-gqa")
    trajectory.base_model = str(tmp_path / "base")
    base.model.save_pretrained(trajectory.base_model)
    base.tokenizer.save_pretrained(trajectory.base_model)
    folders = export_all(trajectory, tmp_path / "out", tensors_dir=tmp_path)
    ids = torch.randint(4, VOCAB, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        exported = load_pruned(folders[1])(ids).logits
        cut = materialize(trajectory, large.target).model(ids).logits
    assert torch.allclose(exported, cut, atol=1e-5)


def _stream_errors(loaded, structure: Structure, tensors: dict) -> list[float]:
    """Per layer, the squared error of the reconstructed model's residual stream (the layer's
    output hidden states) against the dense model's, on the calibration batches."""
    from contextlib import ExitStack

    from gisp.masking import structure_masks, unit_masks

    model, adapter = loaded.model, loaded.adapter
    outputs: dict[str, list[torch.Tensor]] = {"dense": [], "pruned": []}
    layers = adapter.layers(model)
    for which in outputs:
        with torch.no_grad(), ExitStack() as stack:
            if which == "pruned":
                masks = structure_masks(adapter, Structure.full(adapter.spec), structure)
                stack.enter_context(unit_masks(model, adapter, masks))
                stack.enter_context(reconstructed_view(model, adapter, structure, tensors))
            handles = [
                layer.register_forward_hook(
                    lambda m, a, o, which=which: outputs[which].append(o[0] if isinstance(o, tuple) else o)
                )
                for layer in layers
            ]
            for batch in batches(loaded):
                model(input_ids=batch.input_ids)
            for h in handles:
                h.remove()
    errors = [0.0] * len(layers)
    for i, (d, p) in enumerate(zip(outputs["dense"], outputs["pruned"], strict=True)):
        errors[i % len(layers)] += float((d - p).pow(2).sum())
    return errors


@pytest.mark.parametrize("family", ["llama-gqa", "qwen2"])
def test_the_residual_refit_brings_the_residual_stream_closer_to_the_dense_one(family: str) -> None:
    """Fitting each output projection to the dense output plus the drift of the residual stream
    minimises the stream's error after every block, where the plain refit minimises only the
    projection's own: so the stream ends nearer the dense one, and at no layer much farther."""
    _, structure = pruned_structure(family, 0.5)
    loaded = tiny_model(family)
    variant = get_reconstruction("lstsq")
    plain = reconstruct(loaded.model, loaded.adapter, structure, batches(loaded), variant, 1e-6)
    residual = reconstruct(loaded.model, loaded.adapter, structure, batches(loaded), variant, 1e-6, residual=1.0)
    assert tensors_bytes(plain.tensors) != tensors_bytes(residual.tensors)
    before = _stream_errors(loaded, structure, plain.tensors)
    after = _stream_errors(loaded, structure, residual.tensors)
    assert after[0] <= before[0] * (1 + 1e-6), (before, after)  # the same inputs: the residual fit is optimal there
    assert after[-1] < before[-1], (before, after)


@pytest.mark.parametrize("variant,changes", [("lstsq-select-anchored", True), ("bias", False)])
def test_the_stage_passes_reconstruct_residual_to_the_least_squares_refits_only(variant: str, changes: bool) -> None:
    loaded = tiny_model("llama-gqa")
    base = PruneSettings(targets=[0.4], steps=2, batch_size=8, reconstruct=variant)
    trajectory = prune(loaded, EXAMPLES, base, new_trajectory(loaded, base, "0" * 64), None, None, False)
    refits = []
    for residual in (0.0, 1.0):
        settings = PruneSettings(**{**base.to_dict(), "reconstruct_residual": residual})
        copied = copy.deepcopy(trajectory)
        observer = Keep()
        reconstruct_checkpoints(tiny_model("llama-gqa"), EXAMPLES, settings, copied, observer, None, guard=False)
        refits.append(observer.tensors[0.4])
    assert (refits[0] != refits[1]) == changes
