"""The importance-estimator interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from gisp.adapters import ArchitectureAdapter
from gisp.errors import ConfigError
from gisp.objectives import Batch, Objective
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


_ESTIMATORS: dict[str, type[ImportanceEstimator]] = {}


def register_estimator(cls: type[ImportanceEstimator]) -> type[ImportanceEstimator]:
    _ESTIMATORS[cls.name] = cls
    return cls


def estimator_names() -> list[str]:
    return sorted(_ESTIMATORS)


def get_estimator(name: str) -> ImportanceEstimator:
    try:
        return _ESTIMATORS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown importance {name!r}; choose one of {', '.join(estimator_names())}", field="importance"
        ) from None
