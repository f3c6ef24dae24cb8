"""Perplexity on text and multiple-choice NLL: what the pruner's held-out metrics and `gisp eval` measure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from gisp.data import ChoiceExample, Example, SequenceExample, read_records
from gisp.data.examples import text_stream
from gisp.objectives.base import pad_sequences, sequence_nll


@dataclass
class PerplexityResult:
    perplexity: float
    nll: float
    tokens: int


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def sequence_perplexity(
    model: nn.Module, examples: list[SequenceExample], batch_size: int = 8, pad_id: int = 0
) -> PerplexityResult:
    """Token-weighted perplexity over the labelled tokens of `examples`."""
    total_nll, total_tokens = 0.0, 0
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        batch = pad_sequences(chunk, pad_id).to(_device(model))
        per_seq = sequence_nll(model, batch)
        counts = (batch.labels[:, 1:] != -100).sum(1)
        total_nll += float((per_seq * counts).sum())
        total_tokens += int(counts.sum())
    nll = total_nll / max(total_tokens, 1)
    return PerplexityResult(math.exp(nll), nll, total_tokens)


@torch.no_grad()
def choice_nll(
    model: nn.Module, examples: list[ChoiceExample], pad_id: int = 0, items_per_batch: int = 16
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per item, (mean NLL, summed NLL) of each choice's tokens; many items per forward pass."""
    out = []
    for i in range(0, len(examples), items_per_batch):
        chunk = examples[i : i + items_per_batch]
        batch = pad_sequences([seq for item in chunk for seq in item.choices], pad_id).to(_device(model))
        mean = sequence_nll(model, batch).float().cpu()
        total = mean * (batch.labels[:, 1:] != -100).sum(1).float().cpu()
        sizes = [len(item.choices) for item in chunk]
        out += list(zip(mean.split(sizes), total.split(sizes), strict=True))
    return out


def choice_accuracy(model: nn.Module, examples: list[ChoiceExample], pad_id: int = 0) -> float:
    """Share of items whose answer has the lowest mean per-token NLL (length-normalized)."""
    if not examples:
        return float("nan")
    scores = choice_nll(model, examples, pad_id)
    return sum(int(torch.argmin(mean)) == item.answer for (mean, _), item in zip(scores, examples, strict=True)) / len(
        examples
    )


def heldout_metrics(model: nn.Module, examples: list[Example], pad_id: int = 0) -> dict[str, float]:
    """Held-out perplexity for sequence examples, accuracy (and answer perplexity) for choice items."""
    choices = [e for e in examples if isinstance(e, ChoiceExample)]
    sequences = [e for e in examples if isinstance(e, SequenceExample)]
    metrics: dict[str, float] = {}
    if sequences:
        metrics["perplexity"] = sequence_perplexity(model, sequences, pad_id=pad_id).perplexity
    if choices:
        metrics["accuracy"] = choice_accuracy(model, choices, pad_id=pad_id)
    return metrics


def text_windows(
    tokenizer: PreTrainedTokenizerBase, path: str | Path, seq_len: int, max_windows: int | None = None
) -> list[SequenceExample]:
    """A file as consecutive non-overlapping windows (every token scored but each window's first)."""
    _, records = read_records(path)
    stream = text_stream(tokenizer, records)
    count = len(stream) // seq_len
    if max_windows is not None:
        count = min(count, max_windows)
    return [
        SequenceExample(stream[i * seq_len : (i + 1) * seq_len], stream[i * seq_len : (i + 1) * seq_len])
        for i in range(count)
    ]


def file_perplexity(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    seq_len: int = 256,
    max_windows: int | None = None,
) -> PerplexityResult:
    windows = text_windows(tokenizer, path, seq_len, max_windows)
    if not windows:
        raise ValueError(f"{path} has fewer tokens than one window of {seq_len}")
    return sequence_perplexity(model, windows)
