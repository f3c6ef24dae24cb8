"""The importance-estimator interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from gisp.adapters import ArchitectureAdapter
from gisp.objectives import Batch, Objective
from gisp.registry import Registry
from gisp.structure import Kind

# (layer, kind) -> scores of the layer's current units, in current order
UnitScores = dict[tuple[int, Kind], torch.Tensor]


@dataclass
class ScoringContext:
    model: nn.Module
    adapter: ArchitectureAdapter
    objective: Objective
    batches: list[Batch]
    device: torch.device


@dataclass
class ScoreResult:
    scores: UnitScores
    loss: float  # the objective's mean over the calibration samples, before this step's removal


class ImportanceEstimator(ABC):
    name: str = ""

    @abstractmethod
    def estimate(self, ctx: ScoringContext) -> ScoreResult: ...


ESTIMATORS: Registry[type[ImportanceEstimator]] = Registry("importance", group="gisp.importance")
register_estimator = ESTIMATORS.register
estimator_names = ESTIMATORS.names

get_estimator = ESTIMATORS.create
