"""Multiplicative masks on unit outputs (the input of o_proj / down_proj).

A mask of 0 makes a unit contribute nothing, which is exactly what removing it does; so a masked
base model is the reference that sliced and exported models are checked against. Masks that
require grad give ∂L/∂m per unit, which the Fisher estimator uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from gisp.adapters import ArchitectureAdapter
from gisp.structure import KINDS, Kind, Structure

MaskKey = tuple[int, Kind]


@contextmanager
def unit_masks(model: nn.Module, adapter: ArchitectureAdapter, masks: dict[MaskKey, torch.Tensor]) -> Iterator[None]:
    """Multiply each unit's output by its mask while the context is open.

    A mask is [units] (the same for every sequence) or [sequences, units] (one row per sequence of
    the batch, for per-sample gradients).
    """
    handles = []
    layers = adapter.layers(model)
    for (layer_index, kind), mask in masks.items():
        module = adapter.unit_output_module(layers[layer_index], kind)
        if module is None:
            continue
        size = adapter.output_unit_size(kind)

        def hook(_module: nn.Module, args: tuple, mask: torch.Tensor = mask, size: int = size) -> tuple:
            x = args[0]
            scale = mask.to(x.dtype).repeat_interleave(size, dim=-1)
            if scale.dim() == 2:  # [sequences, width] -> broadcast over positions
                scale = scale.unsqueeze(1)
            return (x * scale,) + tuple(args[1:])

        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def structure_masks(adapter: ArchitectureAdapter, current: Structure, kept: Structure) -> dict[MaskKey, torch.Tensor]:
    """Masks over a model shaped as `current` that zero every unit `kept` does not keep."""
    masks: dict[MaskKey, torch.Tensor] = {}
    for kind in KINDS:
        for layer, (now, then) in enumerate(zip(current.kept(kind), kept.kept(kind), strict=True)):
            if now == then:
                continue
            keep = set(then)
            masks[(layer, kind)] = torch.tensor([1.0 if unit in keep else 0.0 for unit in now])
    return masks
