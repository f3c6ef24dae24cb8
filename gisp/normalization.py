"""Block-wise normalization: makes attention and MLP scores comparable before the global ranking.

- `param` (default): each unit's score divided by its own parameter count, i.e. the mean
  per-weight importance of the unit.
- `reference`: the constants of the official GISP code: KV-group (head) scores divided by
  4·head_dim·hidden_size, MLP-channel scores by 3·intermediate_size.
"""

from __future__ import annotations

from collections.abc import Callable

from gisp.registry import Registry
from gisp.structure import ArchSpec, Kind

Normalizer = Callable[[ArchSpec, Kind], float]


def _param(spec: ArchSpec, kind: Kind) -> float:
    return float(spec.unit_params(kind))


def _reference(spec: ArchSpec, kind: Kind) -> float:
    if kind == "attn":
        return float(4 * spec.head_dim * spec.hidden_size)
    return float(3 * spec.intermediate_size)


NORMALIZATIONS: Registry[Normalizer] = Registry("normalization")
NORMALIZATIONS.register(_param, ["param"])
NORMALIZATIONS.register(_reference, ["reference"])


def normalizer(name: str) -> Normalizer:
    """The divisor function for `name`: score / divisor(spec, kind)."""
    return NORMALIZATIONS.get(name)
