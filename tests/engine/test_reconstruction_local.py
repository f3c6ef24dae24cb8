"""`reconstruct_target local`: each output projection fitted to what the uncut dense projection
computes on the pruned model's own inputs (SparseGPT's and T'yr's objective), not to the dense
model's output. Tiny random configs."""

from __future__ import annotations

import copy

import pytest
import torch

from gisp.config import PruneSettings
from gisp.errors import ConfigError
from gisp.pruner import new_trajectory, prune
from gisp.reconstruction import get_reconstruction
from gisp.reconstruction.stage import reconstruct_checkpoints
from gisp.reconstruction.stream import reconstruct
from gisp.reconstruction.tensors import tensors_bytes
from gisp.structure import Structure
from tests.engine.test_reconstruction import EXAMPLES, Keep, batches, pruned_structure
from tests.engine.tiny import tiny_model


def test_tiny_lambda_on_an_unpruned_model_gives_back_the_dense_weights() -> None:
    loaded = tiny_model("llama-gqa")
    full = Structure.full(loaded.adapter.spec)
    variant = get_reconstruction("lstsq")
    result = reconstruct(loaded.model, loaded.adapter, full, batches(loaded), variant, 1e-9, local=True)
    params = dict(loaded.model.named_parameters())
    assert set(result.tensors) == {n for n in params if n.endswith(("o_proj.weight", "down_proj.weight"))}
    for name, value in result.tensors.items():
        assert torch.allclose(value, params[name], atol=1e-4), name


@pytest.mark.parametrize("family", ["llama-gqa", "qwen2"])
def test_the_local_target_differs_from_the_dense_one_only_past_the_first_block(family: str) -> None:
    """Layer 0's attention sees the same inputs in both models, so there the two targets agree;
    a cut block after a cut one is fed the pruned stream, where the uncut layer's output is not
    the dense model's, and the fits part (at 0.3 every layer's MLP is cut)."""
    _, structure = pruned_structure(family, 0.3)
    assert all(0 < width for width in structure.layer_widths()[1])
    loaded = tiny_model(family)
    variant = get_reconstruction("lstsq")
    dense = reconstruct(loaded.model, loaded.adapter, structure, batches(loaded), variant, 1e-6)
    local = reconstruct(loaded.model, loaded.adapter, structure, batches(loaded), variant, 1e-6, local=True)
    first = "model.layers.0.self_attn.o_proj.weight"
    assert torch.allclose(dense.tensors[first], local.tensors[first], atol=1e-6)
    later = [n for n in dense.tensors if n != first]
    assert any(float((dense.tensors[n] - local.tensors[n]).abs().max()) > 1e-5 for n in later)


def test_the_local_target_ignores_the_input_refit_and_the_drift() -> None:
    _, structure = pruned_structure("llama-gqa", 0.5)
    loaded = tiny_model("llama-gqa")
    variant = get_reconstruction("lstsq-anchored")
    plain = reconstruct(loaded.model, loaded.adapter, structure, batches(loaded), variant, 1e-2, local=True)
    both = reconstruct(
        loaded.model, loaded.adapter, structure, batches(loaded), variant, 1e-2, inputs=True, residual=1.0, local=True
    )
    assert tensors_bytes(plain.tensors) == tensors_bytes(both.tensors)


@pytest.mark.parametrize("variant,changes", [("lstsq-select-anchored", True), ("bias", False)])
def test_the_stage_passes_the_target_to_the_least_squares_refits_only(variant: str, changes: bool) -> None:
    loaded = tiny_model("llama-gqa")
    base = PruneSettings(targets=[0.4], steps=2, batch_size=8, reconstruct=variant)
    trajectory = prune(loaded, EXAMPLES, base, new_trajectory(loaded, base, "0" * 64), None, None, False)
    refits = []
    for target in ("dense", "local"):
        settings = PruneSettings(**{**base.to_dict(), "reconstruct_target": target})
        observer = Keep()
        reconstruct_checkpoints(
            tiny_model("llama-gqa"), EXAMPLES, settings, copy.deepcopy(trajectory), observer, guard=False
        )
        refits.append(observer.tensors[0.4])
    assert (refits[0] != refits[1]) == changes


def test_reconstruct_target_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        PruneSettings(targets=[0.5], reconstruct_target="model")
    assert info.value.field == "reconstruct_target"
