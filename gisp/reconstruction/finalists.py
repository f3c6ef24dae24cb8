"""The reconstruction stage's verdict on a search's finalists: which of several structures the stage
makes best. Each is refit as the stage refits a checkpoint (its variant and settings), without the
held-back calibration sequences (the guard's), and scored by the objective's loss on those.

Why: a search (tyr) scores allocations with its own local re-solve, but with `tyr_refit` stage the
weights a user downloads are the stage's refit, which rewards other allocations. On stories260K at
0.5 the uniform start, refit by the stage, beat every allocation of the search's last population
(docs/benchmarks.md §9). The held-back loss is the guard's measure: the refit never saw those
sequences, so a finalist cannot win by fitting them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from gisp.config import PruneSettings
from gisp.data import Example
from gisp.loading import LoadedModel
from gisp.methods.search import Verdict
from gisp.objectives import Batch, get_objective
from gisp.objectives.base import pad_token_id
from gisp.reconstruction.base import get_reconstruction
from gisp.reconstruction.guard import guard_examples, objective_loss
from gisp.reconstruction.stream import Hooks, LayerInput, catch_inputs, reconstruct
from gisp.reconstruction.tensors import reconstructed_view
from gisp.structure import Structure

log = logging.getLogger("gisp.reconstruction.finalists")


@dataclass
class FinalistJudge:
    """Refits and scores structures on `dense` (left unchanged). Built once per run; the dense
    model's layer inputs are caught on first use and kept for the run's later targets."""

    dense: LoadedModel
    settings: PruneSettings
    batches: list[Batch]
    held: list[Batch]
    caught: tuple[list[Tensor], list[list[LayerInput]]] | None = field(default=None, repr=False)

    @property
    def chooses_units(self) -> bool:
        """Whether the refit chooses each layer's units itself (a selecting variant): then only a
        structure's counts matter, and a search may offer an allocation it holds no units for."""
        return get_reconstruction(self.settings.reconstruct).selects

    def judge(
        self,
        structure: Structure,
        progress: Callable[[int, int], None] = lambda done, total: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Verdict:
        """One finalist; `progress` hears of every layer refit (layers done, of)."""
        s, model, adapter = self.settings, self.dense.model, self.dense.adapter
        variant = get_reconstruction(s.reconstruct)
        if self.caught is None:
            self.caught = catch_inputs(model, adapter, self.batches)
        result = reconstruct(
            model,
            adapter,
            structure,
            self.batches,
            variant,
            s.reconstruct_lambda,
            None,
            Hooks(progress=progress, should_stop=should_stop),
            self.caught,
            holdout=True,
            inputs=s.reconstruct_inputs and variant.least_squares,
            residual=s.reconstruct_residual if variant.least_squares else 0.0,
            local=s.reconstruct_target == "local" and variant.least_squares,
        )
        with torch.no_grad(), reconstructed_view(model, adapter, result.structure, result.tensors):
            loss = objective_loss(model, get_objective(s.objective), self.held)
        return Verdict(result.structure, loss)


def finalist_judge(dense: LoadedModel, examples: list[Example], settings: PruneSettings) -> FinalistJudge | None:
    """A judge over the stage's calibration windows `examples`, or None when the stage does not
    refit or there are too few windows to hold any back (then a search keeps its own best)."""
    if not get_reconstruction(settings.reconstruct).refits:
        return None
    held_examples = guard_examples(examples)
    if not held_examples:
        log.warning("%d calibration windows are too few to judge a search's finalists", len(examples))
        return None
    objective = get_objective(settings.objective)
    pad = pad_token_id(dense.tokenizer)
    batches = objective.batches(examples, settings.batch_size, pad)
    held = objective.batches(held_examples, settings.batch_size, pad)
    return FinalistJudge(dense, settings, batches, held)
