"""The three objectives of the paper: perplexity, completion and margin."""

from __future__ import annotations

import torch
from torch import nn

from gisp.data.examples import ChoiceExample, Example
from gisp.objectives.base import Batch, Objective, pad_sequences, register_objective, sequence_nll


@register_objective
class PerplexityObjective(Objective):
    """Next-token loss on every token (text windows; whole prompt+answer sequences)."""

    name = "perplexity"
    mode = "lm"
    accepts = ("text", "completion", "choice")
    needs = "'text'"

    def sample_losses(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return sequence_nll(model, batch)


@register_objective
class CompletionObjective(Objective):
    """Loss on the completion (answer) tokens only, given the prompt."""

    name = "completion"
    mode = "completion"
    accepts = ("completion", "choice")
    needs = "'prompt'/'completion'"

    def sample_losses(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return sequence_nll(model, batch)


@register_objective
class MarginObjective(Objective):
    """Multiple choice: loss of the correct choice minus the mean loss of the others.

    Its gradient is ∂L+/∂W − ∂L−/∂W, so importance |(∂L+/∂W − ∂L−/∂W)·W| (the paper's margin
    score) keeps what separates right from wrong answers.
    """

    name = "margin"
    mode = "choice"
    accepts = ("choice",)
    needs = "'choices' (multiple-choice)"

    def batches(self, examples: list[Example], batch_size: int, pad_id: int) -> list[Batch]:
        out = []
        for i in range(0, len(examples), batch_size):
            items = [e for e in examples[i : i + batch_size] if isinstance(e, ChoiceExample)]
            batch = pad_sequences([seq for item in items for seq in item.choices], pad_id)
            batch.answers = [item.answer for item in items]
            batch.group_sizes = [len(item.choices) for item in items]
            out.append(batch)
        return out

    def sample_losses(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        assert batch.group_sizes is not None and batch.answers is not None
        nll = sequence_nll(model, batch)
        margins = []
        for group, answer in zip(nll.split(batch.group_sizes), batch.answers, strict=True):
            wrong = torch.cat([group[:answer], group[answer + 1 :]])
            margins.append(group[answer] - wrong.mean())
        return torch.stack(margins)
