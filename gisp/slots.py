"""Where whole units sit in a weight: unit u of width s owns the slots [u·s, (u+1)·s) along the
axis it is cut on (q/k/v or gate/up rows, o_proj or down_proj columns). One helper, so every
slicer, refit and view indexes a unit the same way."""

from __future__ import annotations

import torch
from torch import Tensor


def unit_slots(units: list[int], size: int, device: torch.device | str | None = None) -> Tensor:
    """The slots of `units` (in the order given), `size` each, as a long index tensor."""
    return torch.tensor([u * size + i for u in units for i in range(size)], dtype=torch.long, device=device)
