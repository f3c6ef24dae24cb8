"""The interface of a search-based method: it finds each target's structure (and re-solved
weights) itself, target by target, instead of ranking units for the pruner's schedule.

The pruner builds one `SearchContext` per run and calls `PruningMethod.search_target` for every
target; what a method keeps between targets (ladders, a dense reference) is its own business."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn

from gisp.adapters import ArchitectureAdapter
from gisp.objectives import Batch, Objective
from gisp.structure import Structure

if TYPE_CHECKING:  # config imports the methods
    from gisp.config import PruneSettings


@dataclass
class SearchProgress:
    """Where a search-based method stands inside one target."""

    target: float
    round: int  # 1-based
    rounds: int
    phase: str  # "ladder" (layers built so far) or "search" (generations so far)
    done: int
    total: int
    best_fitness: float | None  # KL from the dense model of the best allocation so far (search)
    seconds: float  # since the target's search started
    # ladder phase: how many of the `done` layers were read back from the run's folder (a resume)
    # instead of built; a round whose result was stored reports nothing
    loaded: int = 0


@dataclass
class Verdict:
    """A structure as the reconstruction stage makes it: the structure its refit keeps (a selecting
    refit chooses the units inside each layer itself) and the objective's loss on the held-back
    calibration sequences the refit never saw."""

    structure: Structure
    held_loss: float


class Judge(Protocol):
    """The reconstruction stage's verdict on a candidate structure (gisp.reconstruction.finalists)."""

    @property
    def chooses_units(self) -> bool: ...

    def judge(
        self, structure: Structure, progress: Callable[[int, int], None], should_stop: Callable[[], bool]
    ) -> Verdict: ...


@dataclass
class SearchContext:
    """What a search sees: the dense model, the calibration batches, the run's settings, and the
    observer's progress and stop callbacks. `state_dir` is the run's folder (beside its
    trajectory, kept by a resume), where a method may keep what lets a resumed run continue a
    target it was in; `run_key` names the base model (and revision) for such state's fingerprint."""

    model: nn.Module
    adapter: ArchitectureAdapter
    objective: Objective
    batches: list[Batch]
    device: torch.device
    settings: PruneSettings
    pad: int
    protected: set[int]
    report: Callable[[SearchProgress], None]
    should_stop: Callable[[], bool]
    state_dir: Path | None = None
    run_key: str = ""
    # the reconstruction stage's verdict on candidate structures (set when the stage refits a
    # search's structures): a search may let it choose among its finalists
    judge: Judge | None = None


@dataclass
class SearchOutcome:
    structure: Structure
    # the re-solved output projections of the pruned blocks, by their names in the model's state
    # dict (as the reconstruction stage stores a checkpoint's tensors), over the kept units' columns
    weights: dict[str, Tensor]
    loss: float  # the calibration objective of the result
    fitness: float  # its KL from the dense model on the last stage's sequences
    applied: Callable[[], AbstractContextManager]  # the dense model runs as the result inside it
    # called once the target's checkpoint is persisted and announced: drop the state kept to resume it
    committed: Callable[[], None] | None = None
