"""What a pruned model keeps: per layer, the base model's KV groups and MLP channels that survive.

Indices always refer to the *base* model, so structures from different steps compare directly
(nestedness is a subset test) and any one of them, with the base weights, rebuilds its model.
Sparsity is the fraction of prunable attention+MLP parameters removed; a unit's parameters are
its q/k/v rows (with their biases) and o columns, or its gate/up rows (with biases) and down
column. Embeddings, norms, the LM head and o_proj/down_proj biases (which belong to no unit)
are not prunable and not counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["attn", "mlp"]
KINDS: tuple[Kind, Kind] = ("attn", "mlp")


@dataclass(frozen=True)
class ArchSpec:
    """The shape facts of a base model that pruning needs."""

    family: str
    num_layers: int
    hidden_size: int
    num_kv_heads: int
    heads_per_group: int
    head_dim: int
    intermediate_size: int
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    vocab_size: int
    tie_word_embeddings: bool

    def unit_params(self, kind: Kind) -> int:
        """Parameters that removing one unit of `kind` removes."""
        if kind == "attn":
            q = self.heads_per_group * self.head_dim
            rows = q + 2 * self.head_dim
            return rows * self.hidden_size + (rows if self.qkv_bias else 0) + self.hidden_size * q
        return 3 * self.hidden_size + (2 if self.mlp_bias else 0)

    def units(self, kind: Kind) -> int:
        return self.num_kv_heads if kind == "attn" else self.intermediate_size

    @property
    def prunable_params(self) -> int:
        per_layer = sum(self.units(k) * self.unit_params(k) for k in KINDS)
        return per_layer * self.num_layers

    @property
    def fixed_params(self) -> int:
        """Parameters pruning never touches (embeddings, norms, head, unowned biases)."""
        h = self.hidden_size
        embed = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        per_layer = 2 * h + (h if self.o_bias else 0) + (h if self.mlp_bias else 0)
        return embed + head + h + per_layer * self.num_layers

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        return cls(**data)


@dataclass(frozen=True)
class Unit:
    layer: int
    kind: Kind
    index: int  # index in the base model


@dataclass
class Structure:
    """Kept base-model unit indices per layer, sorted ascending."""

    attn: list[list[int]]
    mlp: list[list[int]]

    @classmethod
    def full(cls, spec: ArchSpec) -> Structure:
        return cls(
            attn=[list(range(spec.num_kv_heads)) for _ in range(spec.num_layers)],
            mlp=[list(range(spec.intermediate_size)) for _ in range(spec.num_layers)],
        )

    def kept(self, kind: Kind) -> list[list[int]]:
        return self.attn if kind == "attn" else self.mlp

    def copy(self) -> Structure:
        return Structure(attn=[list(x) for x in self.attn], mlp=[list(x) for x in self.mlp])

    def without(self, units: list[Unit]) -> Structure:
        drop: dict[tuple[int, Kind], set[int]] = {}
        for unit in units:
            drop.setdefault((unit.layer, unit.kind), set()).add(unit.index)
        out = self.copy()
        for (layer, kind), indices in drop.items():
            kept = out.kept(kind)
            missing = indices - set(kept[layer])
            if missing:
                raise ValueError(f"layer {layer} {kind} units {sorted(missing)} are already removed")
            kept[layer] = [i for i in kept[layer] if i not in indices]
        return out

    def kept_params(self, spec: ArchSpec) -> int:
        return sum(len(layer) * spec.unit_params(kind) for kind in KINDS for layer in self.kept(kind))

    def sparsity(self, spec: ArchSpec) -> float:
        return 1.0 - self.kept_params(spec) / spec.prunable_params

    def total_params(self, spec: ArchSpec) -> int:
        return spec.fixed_params + self.kept_params(spec)

    def is_subset_of(self, other: Structure) -> bool:
        return all(
            set(mine) <= set(theirs)
            for kind in KINDS
            for mine, theirs in zip(self.kept(kind), other.kept(kind), strict=True)
        )

    def layer_widths(self) -> tuple[list[int], list[int]]:
        """(kept KV groups per layer, kept MLP channels per layer)."""
        return [len(x) for x in self.attn], [len(x) for x in self.mlp]

    def flops_per_token(self, spec: ArchSpec, context: int = 0) -> int:
        """Multiply-accumulates ×2 of one token's forward pass (matmuls only).

        `context` adds the attention-score and value products over that many cached tokens.
        """
        macs = spec.vocab_size * spec.hidden_size  # LM head
        for attn, mlp in zip(self.attn, self.mlp, strict=True):
            q = len(attn) * spec.heads_per_group * spec.head_dim
            kv = len(attn) * spec.head_dim
            macs += spec.hidden_size * (q + 2 * kv) + q * spec.hidden_size
            macs += 2 * q * context
            macs += 3 * spec.hidden_size * len(mlp)
        return 2 * macs

    def to_dict(self) -> dict[str, Any]:
        return {"attn": self.attn, "mlp": self.mlp}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Structure:
        return cls(attn=[list(map(int, x)) for x in data["attn"]], mlp=[list(map(int, x)) for x in data["mlp"]])


def is_nested(structures: Iterable[Structure]) -> bool:
    """Whether each structure, given from least to most pruned, is a subnetwork of the one before
    (true of a ranking method's checkpoints; a search-based method's are searched apart)."""
    ordered = list(structures)
    return all(b.is_subset_of(a) for a, b in zip(ordered, ordered[1:], strict=False))
