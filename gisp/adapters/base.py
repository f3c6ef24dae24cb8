"""The adapter interface: where an architecture keeps its prunable units, and how to cut them.

An adapter describes each unit kind as a list of `WeightGroup`s (a tensor, the axis along which
units lie, and how many slices of that axis one unit owns). Scoring, masking and slicing are all
written once against that description.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import nn
from transformers import PretrainedConfig

from gisp.errors import UnsupportedArchitectureError
from gisp.registry import Registry
from gisp.structure import ArchSpec, Kind, Structure


@dataclass(frozen=True)
class WeightGroup:
    """`module.<name>` holds `unit_size` consecutive slices along `axis` per unit."""

    module: nn.Module
    name: str
    axis: int
    unit_size: int

    @property
    def tensor(self) -> nn.Parameter:
        return getattr(self.module, self.name)


class ArchitectureAdapter(ABC):
    """Knows one family's layout. Stateless apart from the spec it was built for."""

    model_types: tuple[str, ...] = ()

    def __init__(self, config: PretrainedConfig) -> None:
        self.spec = self.read_spec(config)

    @staticmethod
    @abstractmethod
    def read_spec(config: PretrainedConfig) -> ArchSpec: ...

    @abstractmethod
    def layers(self, model: nn.Module) -> list[nn.Module]: ...

    @abstractmethod
    def weight_groups(self, layer: nn.Module, kind: Kind) -> list[WeightGroup]:
        """The tensors of `layer` that units of `kind` own (empty when the layer keeps none)."""

    @abstractmethod
    def unit_output_module(self, layer: nn.Module, kind: Kind) -> nn.Module | None:
        """The module whose *input* carries the units' outputs (o_proj, down_proj), for masks."""

    @abstractmethod
    def output_unit_size(self, kind: Kind) -> int:
        """Width of one unit's slice of that input."""

    @abstractmethod
    def residual_branch(self, layer: nn.Module, kind: Kind) -> nn.Module:
        """The block of `kind` whose output (the first element, if a tuple) `layer` adds to the
        residual stream: self-attention or the MLP."""

    @abstractmethod
    def slice_layer(self, layer: nn.Module, kind: Kind, positions: list[int]) -> None:
        """Keep only the units at `positions` (current positions, ascending) of `layer`."""

    @abstractmethod
    def export_names(self) -> tuple[str, str, str]:
        """(model_type, config class, model class) of the exported pruned model."""

    def slice_model(self, model: nn.Module, current: Structure, target: Structure) -> None:
        """Physically cut `model` (now shaped as `current`) down to `target`."""
        for index, layer in enumerate(self.layers(model)):
            for kind in ("attn", "mlp"):
                now, then = current.kept(kind)[index], target.kept(kind)[index]
                if now == then:
                    continue
                position = {unit: pos for pos, unit in enumerate(now)}
                self.slice_layer(layer, kind, [position[u] for u in then])


ADAPTERS: Registry[type[ArchitectureAdapter]] = Registry("architecture", field="model", group="gisp.adapters")
supported_model_types = ADAPTERS.names


def register_adapter(cls: type[ArchitectureAdapter]) -> type[ArchitectureAdapter]:
    """Register `cls` for every transformers model_type it handles."""
    return ADAPTERS.register(cls, cls.model_types)


def adapter_for(config: PretrainedConfig) -> ArchitectureAdapter:
    model_type = getattr(config, "model_type", None)
    base_type = model_type.removeprefix("gisp_") if model_type else ""
    if base_type not in ADAPTERS:
        arch = ", ".join(getattr(config, "architectures", None) or []) or model_type
        raise UnsupportedArchitectureError(
            f"architecture {arch!r} (model_type {model_type!r}) is not supported; "
            f"supported model types: {', '.join(supported_model_types())}",
            field="model",
        )
    return ADAPTERS.get(base_type)(config)
