"""The objective interface and the shared pieces: padding batches and per-sequence NLL."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from gisp.data.examples import IGNORE, Example, Mode, SequenceExample
from gisp.data.records import RecordKind
from gisp.errors import DataFormatError
from gisp.registry import Registry


@dataclass
class Batch:
    """Padded sequences, plus how they group into samples (one group per multiple-choice item)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    answers: list[int] | None = None  # per item, for choice batches
    group_sizes: list[int] | None = None  # sequences per item, for choice batches

    @property
    def num_samples(self) -> int:
        return len(self.group_sizes) if self.group_sizes is not None else int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            self.answers,
            self.group_sizes,
        )


def pad_token_id(tokenizer) -> int:
    """The id used for padding: the tokenizer's pad token, else EOS, else 0. Padded positions are
    masked and unlabelled, so the choice never changes a result; one rule keeps batches alike."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(tokenizer.eos_token_id or 0)


def pad_sequences(examples: list[SequenceExample], pad_id: int) -> Batch:
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return Batch(ids, mask, labels)


def sequence_nll(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean next-token NLL of each sequence over its labelled tokens, shape [num_sequences]."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    targets = batch.labels[:, 1:]
    logits = logits[:, :-1].float()
    nll = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).clamp_min(0), reduction="none"
    ).view_as(targets)
    scored = (targets != IGNORE).to(nll.dtype)
    return (nll * scored).sum(1) / scored.sum(1).clamp_min(1.0)


class Objective(ABC):
    """A loss over calibration samples; importance comes from its gradients."""

    name: str = ""
    mode: Mode = "lm"
    accepts: tuple[RecordKind, ...] = ()
    needs: str = ""  # the field a record must have, named in errors

    def check(self, kind: RecordKind) -> None:
        if kind not in self.accepts:
            raise DataFormatError(
                f"objective {self.name!r} needs {self.needs} records, but the data holds {kind!r} records "
                f"(missing field {self.needs.split()[0]!r})",
                line=1,
                field=self.needs.split()[0].strip("'\""),
            )

    def batches(self, examples: list[Example], batch_size: int, pad_id: int) -> list[Batch]:
        return [
            pad_sequences(examples[i : i + batch_size], pad_id)  # type: ignore[arg-type]
            for i in range(0, len(examples), batch_size)
        ]

    @abstractmethod
    def sample_losses(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """One loss per sample of the batch, shape [batch.num_samples]; the objective is their mean."""


OBJECTIVES: Registry[type[Objective]] = Registry("objective", group="gisp.objectives")
register_objective = OBJECTIVES.register
objective_names = OBJECTIVES.names

get_objective = OBJECTIVES.create
