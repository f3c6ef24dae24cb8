"""Zero-shot multiple-choice accuracy: score log P(choice | context) for every choice, pick the best.

Three decision rules come out of one pass: `accuracy` uses the mean log-likelihood per choice
token (length-normalized, as the pruner's held-out metric does), `accuracy_sum` the plain sum and
`accuracy_chars` the sum per character of the continuation, joining space included (lm-eval's
acc_norm).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from gisp.data import ChoiceRecord
from gisp.data.examples import _join, _record_example
from gisp.eval.perplexity import choice_nll
from gisp.objectives.base import pad_token_id


@dataclass
class ChoiceResult:
    accuracy: float  # by mean NLL per choice token
    accuracy_sum: float  # by summed NLL
    accuracy_chars: float  # by summed NLL per character of the choice
    items: int


def _max_length(model: nn.Module, default: int = 2048) -> int:
    return int(getattr(getattr(model, "config", None), "max_position_embeddings", None) or default)


@torch.no_grad()
def choice_scores(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    items: list[ChoiceRecord],
    batch_size: int = 16,
    max_length: int | None = None,
) -> ChoiceResult:
    """Accuracy of `model` on `items`; contexts too long for the model are truncated on the left."""
    if not items:
        return ChoiceResult(float("nan"), float("nan"), float("nan"), 0)
    max_length = max_length or _max_length(model)
    examples = [_record_example(tokenizer, item, "choice", max_length) for item in items]
    scores = choice_nll(model, examples, pad_token_id(tokenizer), batch_size)  # type: ignore[arg-type]
    hits = [0, 0, 0]
    for item, (mean_nll, sum_nll) in zip(items, scores, strict=True):
        chars = torch.tensor([max(_continuation_chars(item.context, c), 1) for c in item.choices])
        for rule, rule_nll in enumerate((mean_nll, sum_nll, sum_nll / chars)):
            hits[rule] += int(int(torch.argmin(rule_nll)) == item.answer)
    return ChoiceResult(hits[0] / len(items), hits[1] / len(items), hits[2] / len(items), len(items))


def _continuation_chars(context: str, choice: str) -> int:
    """Characters the choice adds to the context, the joining space included (lm-eval's acc_norm)."""
    return len(_join(context, choice)) - len(context)
