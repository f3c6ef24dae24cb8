"""Gradient (activation) checkpointing for scoring passes on long sequences.

transformers only checkpoints decoder layers while the model is in training mode, and training
mode switches dropout on. The context below enables checkpointing with every dropout probability
set to 0 (so scores equal those of an eval-mode pass) and restores the model on exit. Recomputation
runs forward hooks inside a layer twice; the estimators' hooks are written to tolerate that
(non-reentrant checkpointing, masks rather than accumulators in the backward path).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def _dropout_off(model: nn.Module) -> list[tuple[object, str, float]]:
    """Zero every dropout probability in `model`; return what to restore."""
    saved: list[tuple[object, str, float]] = []
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            saved.append((module, "p", module.p))
            module.p = 0.0
        for name in ("attention_dropout", "dropout", "hidden_dropout"):
            value = getattr(module, name, None)
            if isinstance(value, float) and value != 0.0:
                saved.append((module, name, value))
                setattr(module, name, 0.0)
    config = getattr(model, "config", None)
    for name in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        value = getattr(config, name, None)
        if isinstance(value, float) and value != 0.0:
            saved.append((config, name, value))
            setattr(config, name, 0.0)
    return saved


@contextmanager
def gradient_checkpointing(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Score with activation checkpointing (training mode, dropout 0) while the context is open."""
    if not enabled:
        yield
        return
    was_training = model.training
    had_input_hooks = bool(getattr(model, "_require_grads_hooks", None))
    saved = _dropout_off(model)
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    enable({"use_reentrant": False})
    model.train()
    try:
        yield
    finally:
        disable()
        if not had_input_hooks and getattr(model, "_require_grads_hooks", None):
            model.disable_input_require_grads()
        for owner, name, value in saved:
            setattr(owner, name, value)
        model.train(was_training)
