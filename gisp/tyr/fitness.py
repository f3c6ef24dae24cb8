"""Fitness of a candidate: KL divergence from the dense model's next-token distribution.

The dense model's top-k logits of every unpadded calibration position are computed once; a
candidate's fitness on the first n sequences is the mean over their positions of
Σ_topk p (log p − log q), with p the dense softmax renormalised over its top k and q the
candidate's full softmax (≥ the KL between the renormalised distributions, and 0 only when the
candidate reproduces them)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gisp.objectives import Batch


def _rows(batches: list[Batch]) -> list[tuple[Tensor, Tensor]]:
    """Every sequence of the batches as (ids, mask), in order."""
    return [(b.input_ids[i], b.attention_mask[i]) for b in batches for i in range(b.input_ids.shape[0])]


def _stack(rows: list[tuple[Tensor, Tensor]], pad: int) -> tuple[Tensor, Tensor]:
    length = max(int(ids.shape[0]) for ids, _ in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (row_ids, row_mask) in enumerate(rows):
        ids[i, : row_ids.shape[0]] = row_ids
        mask[i, : row_mask.shape[0]] = row_mask
    return ids, mask


class DenseReference:
    """The dense model's top-k next-token distribution on the calibration sequences, cached once."""

    def __init__(
        self, model: nn.Module, batches: list[Batch], top_k: int, batch_size: int, pad: int, device: torch.device
    ) -> None:
        self.model, self.device, self.batch_size = model, device, batch_size
        rows = _rows(batches)
        self.chunks = [_stack(rows[i : i + batch_size], pad) for i in range(0, len(rows), batch_size)]
        self.sizes = [int(ids.shape[0]) for ids, _ in self.chunks]
        self.top_k = top_k
        self.cache: list[tuple[Tensor, Tensor, Tensor]] = []  # (probs, indices, log probs) per chunk
        with torch.no_grad():
            for ids, mask in self.chunks:
                logits = self._logits(ids, mask)
                k = min(top_k, logits.shape[-1])
                values, indices = logits.topk(k, dim=-1)
                logp = torch.log_softmax(values.double(), dim=-1)
                self.cache.append((logp.exp().float(), indices, logp.float()))

    @property
    def num_sequences(self) -> int:
        return sum(self.sizes)

    def _logits(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Logits of the positions that predict a token ([positions, vocab]); padding dropped."""
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        keep = (mask[:, :-1] * mask[:, 1:]).bool()
        return logits[keep].float()

    @torch.no_grad()
    def kl(self, sequences: int) -> float:
        """Mean KL over the positions of the first `sequences` calibration sequences, the model as
        it runs now (inside a candidate's context)."""
        total, positions, seen = 0.0, 0, 0
        for (ids, mask), (probs, indices, logp), size in zip(self.chunks, self.cache, self.sizes, strict=True):
            if seen >= sequences:
                break
            take = min(size, sequences - seen)
            if take < size:
                ids, mask = ids[:take], mask[:take]
                count = int((mask[:, :-1] * mask[:, 1:]).sum())
                probs, indices, logp = probs[:count], indices[:count], logp[:count]
            logq = torch.log_softmax(self._logits(ids, mask).double(), dim=-1).gather(-1, indices.to(self.device))
            p = probs.to(self.device).double()
            total += float((p * (logp.to(self.device).double() - logq)).sum())
            positions += int(probs.shape[0])
            seen += take
        return total / max(positions, 1)
