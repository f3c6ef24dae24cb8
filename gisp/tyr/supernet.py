"""The supernet: a ladder of locally pruned levels for every block, and a way to run the dense
model as any choice of one level per block.

A candidate runs on the unchanged dense model with each block's output projection swapped for
the level's (kept input columns, re-solved weight): a removed KV group or channel then
contributes exactly nothing, as if sliced away, and no weight copy of the model is made. Per level
only the kept unit indices and the re-solved projection are stored.

Ladders are built layer by layer with expected error accumulation: the inputs whose Gram matrix
builds layer l's ladders come from the model with layers < l (and, for the MLP, layer l's
attention) at their centre (expected) level, so each ladder sees the errors it will receive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gisp.adapters import ArchitectureAdapter
from gisp.objectives import Batch
from gisp.reconstruction import GramAccumulator
from gisp.structure import Kind
from gisp.tyr.local import Rung, ladder

if TYPE_CHECKING:  # the store reads and writes these ladders
    from gisp.tyr.store import RoundStore

Block = tuple[int, Kind]  # (layer, kind)


class LevelProjection(nn.Module):
    """An output projection reading only the kept input columns, with a re-solved weight."""

    def __init__(self, columns: Tensor, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.register_buffer("columns", columns, persistent=False)
        self.register_buffer("weight", weight, persistent=False)
        self.bias = bias

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.index_select(-1, self.columns), self.weight.to(x.dtype), self.bias)


def _parent(root: nn.Module, child: nn.Module) -> tuple[nn.Module, str]:
    for _name, module in root.named_modules():
        for attr, sub in module.named_children():
            if sub is child:
                return module, attr
    raise ValueError(f"{type(child).__name__} is not inside {type(root).__name__}")


@dataclass
class BlockLadder:
    """The levels of one block: kept-unit count → rung; `centre` is the expected level."""

    block: Block
    units: int  # the block's width in the base model
    centre: int
    step: int  # units between neighbouring levels
    rungs: dict[int, Rung] = field(default_factory=dict)

    def count(self, offset: int) -> int:
        """Kept units at `offset` levels above the centre (positive: sparser)."""
        return self.centre - offset * self.step

    def has(self, offset: int) -> bool:
        return self.count(offset) in self.rungs


class Supernet:
    """Ladders for the prunable blocks of one model, built from calibration batches."""

    def __init__(self, model: nn.Module, adapter: ArchitectureAdapter, batches: list[Batch], device: torch.device):
        self.model, self.adapter, self.batches, self.device = model, adapter, batches, device
        self.ladders: dict[Block, BlockLadder] = {}
        self.loaded = 0  # layers of the last build read from its store, not built

    def module(self, block: Block) -> nn.Module:
        """The block's output projection in the dense model."""
        layer, kind = block
        module = self.adapter.unit_output_module(self.adapter.layers(self.model)[layer], kind)
        if module is None:
            raise ValueError(f"layer {layer} has no {kind} projection")
        return module

    @contextmanager
    def choose(self, counts: dict[Block, int]) -> Iterator[None]:
        """Run the model with each block in `counts` at that level (blocks absent stay dense)."""
        swaps = []
        size = {kind: self.adapter.output_unit_size(kind) for kind in ("attn", "mlp")}
        for block, count in counts.items():
            ladder_ = self.ladders[block]
            if count == ladder_.units:
                continue
            rung = ladder_.rungs[count]
            original = self.module(block)
            columns = torch.tensor(
                [u * size[block[1]] + i for u in rung.kept for i in range(size[block[1]])], dtype=torch.long
            )
            bias = original.bias
            replacement = LevelProjection(
                columns.to(self.device), rung.weight.to(self.device, original.weight.dtype), bias
            )
            parent, attr = _parent(self.adapter.layers(self.model)[block[0]], original)
            setattr(parent, attr, replacement)
            swaps.append((parent, attr, original))
        try:
            yield
        finally:
            for parent, attr, original in reversed(swaps):
                setattr(parent, attr, original)

    @torch.no_grad()
    def gram(self, block: Block, counts: dict[Block, int]) -> Tensor:
        """XᵀX of `block`'s projection inputs over unpadded calibration tokens, the model running
        with `counts`; each pass stops at that projection."""
        module = self.module(block)
        acc = GramAccumulator(module.in_features, device=self.device)
        mask: list[Tensor] = []

        class _Stop(Exception):
            pass

        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            keep = mask[0].to(torch.bool)
            acc.add(x[keep])
            raise _Stop

        handle = module.register_forward_pre_hook(hook)
        try:
            with self.choose(counts):
                for batch in self.batches:
                    batch = batch.to(self.device)
                    mask[:] = [batch.attention_mask]
                    try:
                        self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
                    except _Stop:
                        pass
        finally:
            handle.remove()
        assert acc.gram is not None
        return acc.gram

    def build(
        self,
        plan: dict[Block, tuple[int, int]],
        levels: int,
        damp: float,
        rounds: int,
        on_layer: Callable[[int, int], None] | None = None,
        store: RoundStore | None = None,
        anchor: bool = False,
    ) -> None:
        """Build every block's ladder: `plan` maps a block to (centre count, step in units).
        `on_layer(done, total)` is told after each layer; `anchor` as in `ladder`. With a `store`, a
        layer it holds is loaded instead of built (no Gram pass), every layer built is written to
        it, and the rungs' weights stay in its files, read when used."""
        self.ladders, self.loaded = {}, 0
        layers = sorted({layer for layer, _ in plan})
        size = {kind: self.adapter.output_unit_size(kind) for kind in ("attn", "mlp")}
        for done, layer in enumerate(layers, 1):
            wanted: dict[Block, tuple[int, int, list[int]]] = {}
            for kind in ("attn", "mlp"):
                block = (layer, kind)
                if block not in plan:
                    continue
                centre, step = plan[block]
                units = self.module(block).in_features // size[kind]
                half = levels // 2
                counts = [centre - o * step for o in range(-half, levels - half)]
                wanted[block] = (centre, step, [c for c in counts if 0 <= c <= units])
            stored = store.load_layer(layer, wanted) if store is not None else None
            if stored is not None:
                self.ladders.update({ld.block: ld for ld in stored})
                self.loaded += 1
            else:
                for block, (centre, step, counts) in wanted.items():
                    kind = block[1]
                    units = self.module(block).in_features // size[kind]
                    expected = {b: ld.centre for b, ld in self.ladders.items()}
                    gram = self.gram(block, expected)
                    weight = self.module(block).weight
                    rungs = ladder(gram, weight, size[kind], counts, damp, rounds, f"layer {layer} {kind}", anchor)
                    self.ladders[block] = BlockLadder(block, units, centre, step, rungs)
                if store is not None:  # kept on disk from now on (read when used)
                    self.ladders.update(
                        {ld.block: ld for ld in store.save_layer(layer, [self.ladders[b] for b in wanted])}
                    )
            if on_layer is not None:
                on_layer(done, len(layers))
