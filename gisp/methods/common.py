"""Pieces shared by the data-free baselines."""

from __future__ import annotations

import torch

from gisp.methods.base import MethodContext


@torch.no_grad()
def calibration_loss(ctx: MethodContext) -> float:
    """The objective's mean over the calibration samples (one forward pass), so that every method's
    checkpoints carry a finite loss even when its ranking needs no data."""
    total = sum(batch.num_samples for batch in ctx.batches)
    loss = sum(float(ctx.objective.sample_losses(ctx.model, b.to(ctx.device)).sum()) for b in ctx.batches)
    return loss / max(total, 1)
