"""Fisher importance: the batched per-sample computation equals a one-sample-at-a-time reference
on the mask gradients; gradient checkpointing leaves scores unchanged."""

from __future__ import annotations

import random

import pytest
import torch

from gisp.data import ChoiceExample, SequenceExample
from gisp.importance import ScoringContext, get_estimator
from gisp.importance.checkpointing import gradient_checkpointing
from gisp.masking import unit_masks
from gisp.objectives import get_objective
from gisp.structure import KINDS
from tests.engine.tiny import VOCAB, random_examples, tiny_model


def reference_fisher(loaded, objective, examples) -> dict:
    """Σ_i (∂L_i/∂m)² with one backward per sample through `gisp.masking.unit_masks`."""
    model, adapter = loaded.model, loaded.adapter
    for param in model.parameters():
        param.requires_grad_(False)
    layers = adapter.layers(model)
    totals = {}
    for example in examples:
        masks = {}
        for i, layer in enumerate(layers):
            for kind in KINDS:
                width = adapter.unit_output_module(layer, kind).weight.shape[1] // adapter.output_unit_size(kind)
                masks[(i, kind)] = torch.ones(width, requires_grad=True)
        (batch,) = objective.batches([example], 1, 0)
        with unit_masks(model, adapter, masks):
            objective.sample_losses(model, batch).sum().backward()
        for key, mask in masks.items():
            totals[key] = totals.get(key, 0) + mask.grad.double() ** 2
    return totals


def fast_fisher(loaded, objective, examples, batch_size: int, checkpointing: bool = False):
    batches = objective.batches(examples, batch_size, 0)
    context = ScoringContext(loaded.model, loaded.adapter, objective, batches, torch.device("cpu"))
    with gradient_checkpointing(loaded.model, checkpointing):
        return get_estimator("fisher").estimate(context)


def choice_examples(count: int, seed: int = 0) -> list[ChoiceExample]:
    rng = random.Random(seed)
    items = []
    for _ in range(count):
        context = [1] + [rng.randrange(4, VOCAB) for _ in range(rng.randrange(4, 9))]
        choices = []
        for _ in range(3):
            tail = [rng.randrange(4, VOCAB) for _ in range(rng.randrange(2, 5))]
            choices.append(SequenceExample(context + tail, [-100] * len(context) + tail))
        items.append(ChoiceExample(choices, rng.randrange(3)))
    return items


@pytest.mark.parametrize("family", ["llama-gqa", "llama-bias"])
def test_batched_fisher_equals_per_sample_reference(family: str) -> None:
    loaded = tiny_model(family)
    objective = get_objective("perplexity")
    examples = random_examples(6, 12, seed=3)
    result = fast_fisher(loaded, objective, examples, batch_size=4)
    reference = reference_fisher(loaded, objective, examples)
    assert set(result.scores) == set(reference)
    for key, expected in reference.items():
        assert torch.allclose(result.scores[key].double(), expected, rtol=1e-4, atol=1e-10), key
        assert float(expected.sum()) > 0
    assert all(p.grad is None for p in loaded.model.parameters())  # no weight gradients were computed


def test_fisher_groups_choice_sequences_into_samples() -> None:
    """Margin batches hold several sequences per sample; the per-sample gradient is their sum."""
    loaded = tiny_model("llama-gqa")
    objective = get_objective("margin")
    examples = choice_examples(5)
    result = fast_fisher(loaded, objective, examples, batch_size=2)
    reference = reference_fisher(loaded, objective, examples)
    for key, expected in reference.items():
        assert torch.allclose(result.scores[key].double(), expected, rtol=1e-4, atol=1e-10), key


def test_fisher_restores_requires_grad_and_reports_the_loss() -> None:
    loaded = tiny_model("llama-gqa")
    for param in loaded.model.parameters():
        param.requires_grad_(True)
    objective = get_objective("perplexity")
    examples = random_examples(4, 10)
    result = fast_fisher(loaded, objective, examples, batch_size=2)
    assert all(p.requires_grad for p in loaded.model.parameters())
    with torch.no_grad():
        (batch,) = objective.batches(examples, 4, 0)
        expected = float(objective.sample_losses(loaded.model, batch).mean())
    assert result.loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("importance", ["fisher", "taylor"])
def test_gradient_checkpointing_gives_the_same_scores(importance: str) -> None:
    loaded = tiny_model("llama-gqa")
    for layer in loaded.adapter.layers(loaded.model):  # would randomize training-mode passes if left on
        layer.self_attn.attention_dropout = 0.5
    objective = get_objective("perplexity")
    batches = objective.batches(random_examples(6, 16, seed=1), 3, 0)
    context = ScoringContext(loaded.model, loaded.adapter, objective, batches, torch.device("cpu"))
    plain = get_estimator(importance).estimate(context)
    calls = []
    handle = loaded.model.model.layers[0].self_attn.q_proj.register_forward_pre_hook(lambda *_: calls.append(1))
    with gradient_checkpointing(loaded.model):
        assert loaded.model.training and loaded.model.model.layers[0].gradient_checkpointing
        checkpointed = get_estimator(importance).estimate(context)
    handle.remove()
    assert len(calls) == 2 * len(batches)  # each layer was recomputed in the backward pass
    assert not loaded.model.training and not loaded.model.model.layers[0].gradient_checkpointing
    assert loaded.model.model.layers[0].self_attn.attention_dropout == 0.5  # restored
    for key, value in plain.scores.items():
        assert torch.allclose(checkpointed.scores[key], value, rtol=1e-5, atol=1e-9), key
    assert checkpointed.loss == pytest.approx(plain.loss, rel=1e-6)


def test_pruner_with_gradient_checkpointing_matches_without() -> None:
    from gisp.config import PruneSettings
    from gisp.pruner import new_trajectory, prune

    structures = []
    for flag in (False, True):
        loaded = tiny_model("llama-gqa")
        settings = PruneSettings(targets=[0.3], steps=3, batch_size=4, importance="fisher", gradient_checkpointing=flag)
        trajectory = prune(loaded, random_examples(8, 16), settings, new_trajectory(loaded, settings, "0" * 64))
        assert not loaded.model.training
        structures.append(trajectory.checkpoints[0].structure)
    assert structures[0] == structures[1]


@pytest.mark.integration
def test_fisher_prunes_stories260k_to_a_finite_heldout_perplexity() -> None:
    import math

    import gisp
    from tests.conftest import shared_path

    model = shared_path("models", "stories260K")
    text = shared_path("data", "tinystories", "tinystories_val.txt")
    settings = gisp.PruneSettings(targets=[0.3], importance="fisher", samples=16, seq_len=128, steps=4, heldout=8)
    trajectory, prepared = gisp.run(str(model), text, settings)
    record = trajectory.checkpoint(0.3)
    assert abs(record.sparsity - 0.3) < 0.02
    assert math.isfinite(record.metrics["perplexity"]) and 1 < record.metrics["perplexity"] < 100
    assert math.isfinite(record.loss)
