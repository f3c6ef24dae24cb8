"""The reconstruction interface: given what the calibration tokens showed about one output
projection (o_proj or down_proj) of one layer, say which of its input units stay and what its new
weight and bias are. The streaming (`gisp.reconstruction.stream`) is written once for every variant.

A variant sees, for the projection's candidate units (those the pruned model still has there):
- `gram`/`cross`: XᵀX and XᵀY of the projection's input in the *pruned* model (through the layers
  already reconstructed) against the *dense* projection's output (its bias taken off);
- `dense_mean`: the mean input of the dense projection over the base model's units (FLAP's baseline);
- the dense weight and bias, and how many units the global ranking keeps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor

from gisp.registry import Registry
from gisp.slots import unit_slots


@dataclass
class ProjectionStats:
    """One output projection of one layer, for one checkpoint."""

    what: str  # "layer 3 o_proj": named in logs and errors
    unit_size: int  # input columns per unit (heads_per_group*head_dim, or 1)
    candidates: list[int]  # base-model unit indices the pruned layer offers, ascending
    keep: list[int]  # base-model unit indices the global ranking keeps (a subset of candidates)
    dense_weight: Tensor  # [out, base units × unit_size], the dense projection
    dense_bias: Tensor | None
    dense_mean: Tensor  # [base units × unit_size], float64
    gram: Tensor  # [candidates × unit_size]², float64
    cross: Tensor  # [candidates × unit_size, out], float64
    tokens: int
    damp: float

    def columns(self, units: list[int], among: list[int]) -> Tensor:
        """Input columns of `units`, as positions in a tensor laid out by `among`."""
        position = {u: p for p, u in enumerate(among)}
        return unit_slots([position[u] for u in units], self.unit_size)


@dataclass
class Refit:
    keep: list[int]  # base-model unit indices that stay (ascending)
    weight: Tensor  # [out, len(keep) × unit_size]
    bias: Tensor | None  # None: the projection keeps the bias it has (or none)


class Reconstruction(ABC):
    """One variant. `refits` False means the stage does nothing (the paper-faithful `none`)."""

    name: str = ""
    refits: bool = True
    selects: bool = False  # it may choose other units inside a layer than the global ranking did
    validates: bool = False  # its ridge term is chosen on held-back calibration sequences (stream._validated)
    adds_bias: bool = False  # the export's o_proj/down_proj get biases (the folder's config says so)
    anchored: bool = False  # its ridge term pulls toward the weights as cut, not toward zero
    least_squares: bool = False  # a ridge refit: `reconstruct_inputs` extends it to the input projections
    # the refit `reconstruct_in_loop` runs after every pruning step (it must keep the step's units);
    # None: the variant cannot run inside the loop
    step_variant: str | None = None

    @abstractmethod
    def refit(self, stats: ProjectionStats) -> Refit: ...


RECONSTRUCTIONS: Registry[type[Reconstruction]] = Registry(
    "reconstruction", field="reconstruct", group="gisp.reconstructions"
)
register_reconstruction = RECONSTRUCTIONS.register
reconstruction_names = RECONSTRUCTIONS.names
get_reconstruction = RECONSTRUCTIONS.create
