"""Unit grouping, parameter accounting, masking vs slicing, empty layers."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import GPT2Config

from gisp.adapters import adapter_for
from gisp.errors import UnsupportedArchitectureError
from gisp.eval.size import parameter_count
from gisp.masking import structure_masks, unit_masks
from gisp.structure import Structure
from tests.engine.tiny import FAMILIES, VOCAB, tiny_model


def random_structure(full: Structure, seed: int, empty_layer: int | None = None) -> Structure:
    rng = random.Random(seed)
    pick = lambda units: sorted(rng.sample(units, rng.randrange(1, len(units) + 1)))  # noqa: E731
    out = Structure(attn=[pick(x) for x in full.attn], mlp=[pick(x) for x in full.mlp])
    if empty_layer is not None:
        out.attn[empty_layer] = []
        out.mlp[empty_layer] = []
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_spec_counts_every_parameter(family: str) -> None:
    loaded = tiny_model(family)
    spec = loaded.adapter.spec
    assert spec.fixed_params + spec.prunable_params == parameter_count(loaded.model)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sliced_model_equals_masked_model(family: str) -> None:
    """Slicing to any structure, including a layer with no heads and no channels, computes exactly
    what masking those units' outputs computes; and the parameter count follows the structure."""
    base = tiny_model(family)
    spec = base.adapter.spec
    full = Structure.full(spec)
    kept = random_structure(full, seed=1, empty_layer=1)
    ids = torch.randint(4, VOCAB, (2, 12))
    with torch.no_grad(), unit_masks(base.model, base.adapter, structure_masks(base.adapter, full, kept)):
        masked = base.model(input_ids=ids).logits
    sliced = tiny_model(family)
    sliced.adapter.slice_model(sliced.model, full, kept)
    with torch.no_grad():
        logits = sliced.model(input_ids=ids).logits
    assert torch.allclose(logits, masked, atol=1e-5)
    assert parameter_count(sliced.model) == kept.total_params(spec)


def test_slicing_in_two_steps_equals_one() -> None:
    base, twice = tiny_model("llama-gqa"), tiny_model("llama-gqa")
    full = Structure.full(base.adapter.spec)
    middle = random_structure(full, seed=2)
    final = random_structure(middle, seed=3)
    base.adapter.slice_model(base.model, full, final)
    twice.adapter.slice_model(twice.model, full, middle)
    twice.adapter.slice_model(twice.model, middle, final)
    ids = torch.randint(4, VOCAB, (1, 10))
    with torch.no_grad():
        assert torch.equal(base.model(input_ids=ids).logits, twice.model(input_ids=ids).logits)


def test_gqa_unit_is_a_kv_group() -> None:
    spec = tiny_model("llama-gqa").adapter.spec
    assert (spec.num_kv_heads, spec.heads_per_group, spec.head_dim) == (2, 2, 8)
    # q rows of 2 heads + k and v rows of 1 head, times hidden, plus the o columns of 2 heads
    assert spec.unit_params("attn") == (16 + 8 + 8) * 32 + 32 * 16
    assert spec.unit_params("mlp") == 3 * 32


def test_every_unit_removed_still_runs_and_generates() -> None:
    loaded = tiny_model("llama-gqa")
    full = Structure.full(loaded.adapter.spec)
    empty = Structure(attn=[[] for _ in full.attn], mlp=[[] for _ in full.mlp])
    loaded.adapter.slice_model(loaded.model, full, empty)
    out = loaded.model.generate(torch.tensor([[1, 5, 6]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)


def test_unsupported_architecture_is_named() -> None:
    with pytest.raises(UnsupportedArchitectureError) as info:
        adapter_for(GPT2Config(architectures=["GPT2LMHeadModel"]))
    assert "GPT2LMHeadModel" in info.value.message and "llama" in info.value.message


def test_unit_slots_lists_each_units_slots_in_the_order_given() -> None:
    from gisp.slots import unit_slots

    assert unit_slots([2, 0], 3).tolist() == [6, 7, 8, 0, 1, 2]
    assert unit_slots([], 4).tolist() == []
