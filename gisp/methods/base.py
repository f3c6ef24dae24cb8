"""The pruning-method interface.

A method sees the current (already sliced) model and returns the order in which its candidate
units should go, least important first. The pruner owns the schedule, target hitting, slicing
and bookkeeping, so every method yields the same trajectory format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from gisp.adapters import ArchitectureAdapter
from gisp.methods.search import SearchContext, SearchOutcome
from gisp.objectives import Batch, Objective
from gisp.registry import Registry
from gisp.structure import Structure, Unit


@dataclass
class MethodContext:
    model: nn.Module
    adapter: ArchitectureAdapter
    objective: Objective
    batches: list[Batch]
    device: torch.device
    structure: Structure  # what the model keeps now
    candidates: list[Unit]  # units that may be removed (alive, not in a protected layer)
    importance: str
    normalization: str
    seed: int
    step: int


@dataclass
class Ranking:
    order: list[Unit]  # a permutation of the candidates, removal first
    loss: float | None  # calibration objective, if the method computed it


class PruningMethod(ABC):
    name: str = ""
    iterative: bool = True  # False: the whole schedule is one step, whatever `steps` says
    # True: the method finds each target's structure (and weights) itself by search, target by
    # target, through `search_target`; `rank` is then not used (gisp.pruner dispatches)
    searches: bool = False

    @abstractmethod
    def rank(self, ctx: MethodContext) -> Ranking: ...

    def search_target(self, ctx: SearchContext, target: float) -> SearchOutcome:
        """A search-based method's structure and re-solved weights for `target`, searched from the
        dense model in `ctx` (the same context for every target of a run)."""
        raise NotImplementedError(f"method {self.name!r} ranks units; it does not search targets")


METHODS: Registry[type[PruningMethod]] = Registry("method", group="gisp.methods")
register_method = METHODS.register
method_names = METHODS.names

get_method = METHODS.create


def scores_by_unit(structure: Structure, scores: dict) -> dict[Unit, float]:
    """Map per-position score tensors of the current model to base-model units."""
    out: dict[Unit, float] = {}
    for (layer, kind), values in scores.items():
        for position, unit_index in enumerate(structure.kept(kind)[layer]):
            out[Unit(layer, kind, unit_index)] = float(values[position])
    return out


def ascending(candidates: list[Unit], score: dict[Unit, float]) -> list[Unit]:
    """Candidates by score, lowest first; ties broken by position so the order is deterministic."""
    return sorted(candidates, key=lambda u: (score[u], u.layer, u.kind, u.index))
