"""T'yr's resumable state on disk, beside the run's trajectory: every finished layer's ladders
(kept unit indices and re-solved output-projection weights, per block and level) and the search
state after every generation, so a run resumed after its worker died continues the target it was
in instead of starting it again.

Layout, under the run's folder:

    tyr/target-0.5000/round-1-<fingerprint>/layer-0003.safetensors   one file per finished layer
    tyr/target-0.5000/round-1-<fingerprint>/search.json               after every generation
    tyr/target-0.5000/round-3-<fingerprint>/finalists.json            after every finalist the stage judged

A round's folder is named by a fingerprint of everything its ladders depend on (the centre plan,
all `tyr_*` settings, the seed, the calibration batches, the base model, dtype and device), so a
file is only ever read back into the run that would have built it. Files are written whole
(temp file, fsync, rename); one that does not load or does not match is ignored and rebuilt. A
target's folder is removed once its checkpoint is persisted and announced; the whole `tyr/` folder
when the run ends unfinished (`discard_state`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load, save
from torch import Tensor

from gisp.methods.search import Verdict
from gisp.objectives import Batch
from gisp.reconstruction.tensors import write_atomic
from gisp.structure import Structure
from gisp.tyr.local import Rung
from gisp.tyr.supernet import Block, BlockLadder

log = logging.getLogger("gisp.tyr")
FORMAT = 1
FOLDER = "tyr"


def batches_sha256(batches: Iterable[Batch]) -> str:
    """The calibration tokens exactly as the ladders' Gram passes see them."""
    digest = hashlib.sha256()
    for batch in batches:
        for tensor in (batch.input_ids, batch.attention_mask):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def target_folder(state_dir: str | Path, target: float) -> Path:
    return Path(state_dir) / FOLDER / f"target-{target:.4f}"


def clear_target(state_dir: str | Path, target: float) -> None:
    """Drop everything kept to resume `target` (its checkpoint is persisted)."""
    folder = target_folder(state_dir, target)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()  # the last target's: no empty tyr/ left
    except OSError:
        pass  # another target's state is still there (or it was gone)


def discard_state(state_dir: str | Path) -> None:
    """Drop every target's resumable state: a run that ended without finishing (cancelled,
    failed) is never resumed, and its ladders can be many times the model's size on disk."""
    shutil.rmtree(Path(state_dir) / FOLDER, ignore_errors=True)


class StoredRung(Rung):
    """A rung whose weight stays in its layer's file (memory-mapped) and is read on each use, so
    a run's ladders cost disk and page cache, not the process's memory."""

    def __init__(self, kept: list[int], handle: Any, name: str) -> None:
        self.kept, self._handle, self._name = kept, handle, name

    @property  # type: ignore[override]
    def weight(self) -> Tensor:
        return self._handle.get_tensor(self._name)


class RoundStore:
    """One round of one target: its ladders layer by layer, and its search state."""

    def __init__(self, state_dir: str | Path, target: float, round_number: int, key: dict[str, Any]) -> None:
        self.fingerprint = hashlib.sha256(json.dumps({"format": FORMAT, **key}, sort_keys=True).encode()).hexdigest()
        self.folder = target_folder(state_dir, target) / f"round-{round_number}-{self.fingerprint[:16]}"

    def _layer_file(self, layer: int) -> Path:
        return self.folder / f"layer-{layer:04d}.safetensors"

    def prune_siblings(self) -> None:
        """Drop this round's folders of other fingerprints (another plan or settings: stale)."""
        number = self.folder.name.rsplit("-", 1)[0]
        for other in self.folder.parent.glob(f"{number}-*"):
            if other != self.folder:
                shutil.rmtree(other, ignore_errors=True)

    def save_layer(self, layer: int, ladders: list[BlockLadder]) -> list[BlockLadder]:
        """Write the layer's ladders; the same ladders read from the file are returned."""
        tensors: dict[str, torch.Tensor] = {}
        meta: list[dict[str, Any]] = []
        for ladder_ in ladders:
            kind = ladder_.block[1]
            meta.append({"kind": kind, "units": ladder_.units, "centre": ladder_.centre, "step": ladder_.step})
            for count, rung in ladder_.rungs.items():
                tensors[f"{kind}.{count}.kept"] = torch.tensor(rung.kept, dtype=torch.int64)
                tensors[f"{kind}.{count}.weight"] = rung.weight.detach().cpu().contiguous()
        header = {"fingerprint": self.fingerprint, "layer": str(layer), "blocks": json.dumps(meta)}
        write_atomic(self._layer_file(layer), save(tensors, metadata=header))
        return self._open(layer, ladders)

    def _open(self, layer: int, ladders: list[BlockLadder]) -> list[BlockLadder]:
        handle = safe_open(str(self._layer_file(layer)), "pt")
        return [
            BlockLadder(
                ld.block,
                ld.units,
                ld.centre,
                ld.step,
                {c: StoredRung(list(r.kept), handle, f"{ld.block[1]}.{c}.weight") for c, r in ld.rungs.items()},
            )
            for ld in ladders
        ]

    def drop_ladders(self) -> None:
        """Remove the round's layer files (its result is kept: a resume will not need them)."""
        for path in self.folder.glob("layer-*.safetensors"):
            path.unlink(missing_ok=True)

    def load_layer(self, layer: int, expected: dict[Block, tuple[int, int, list[int]]]) -> list[BlockLadder] | None:
        """The layer's ladders if a whole file for exactly this round is there, else None (a
        missing, partial, corrupt or foreign file is ignored: the caller rebuilds and overwrites).
        `expected` maps the layer's blocks to (centre, step, level counts) as the plan has them."""
        path = self._layer_file(layer)
        if not path.is_file():
            return None
        try:
            data = path.read_bytes()
            header = _metadata(data)
            if header.get("fingerprint") != self.fingerprint or header.get("layer") != str(layer):
                raise ValueError("a different round's ladders")
            tensors = load(data)
            ladders = []
            for block_meta in json.loads(header["blocks"]):
                block = (layer, block_meta["kind"])
                centre, step, counts = expected[block]
                if (block_meta["centre"], block_meta["step"]) != (centre, step):
                    raise ValueError(f"{block} has another centre or step")
                rungs = {
                    count: Rung(
                        kept=tensors[f"{block[1]}.{count}.kept"].tolist(), weight=tensors[f"{block[1]}.{count}.weight"]
                    )
                    for count in counts
                }
                ladders.append(BlockLadder(block, int(block_meta["units"]), centre, step, rungs))
            if {ld.block for ld in ladders} != set(expected):
                raise ValueError("blocks missing")
            return self._open(layer, ladders)
        except Exception as exc:  # noqa: BLE001  (any unreadable file is rebuilt, never fatal)
            log.warning("ignoring stored tyr ladders %s (%s); rebuilding the layer", path, exc)
            return None

    # the search -------------------------------------------------------------------------------
    def save_search(self, state: dict[str, Any]) -> None:
        write_atomic(self.folder / "search.json", json.dumps({"fingerprint": self.fingerprint, **state}).encode())

    def load_search(self) -> dict[str, Any] | None:
        return self._read("search.json", "the round's search starts again")

    def save_result(self, counts: dict[Block, int], fitness: float) -> None:
        """The round's best allocation: a resume takes it instead of the round's ladders and search."""
        rows = [[layer, kind, count] for (layer, kind), count in sorted(counts.items())]
        data = {"fingerprint": self.fingerprint, "counts": rows, "fitness": fitness}
        write_atomic(self.folder / "result.json", json.dumps(data).encode())

    def load_result(self, blocks: list[Block]) -> tuple[dict[Block, int], float] | None:
        state = self._read("result.json", "the round is run again")
        if state is None:
            return None
        counts = {(int(layer), str(kind)): int(count) for layer, kind, count in state["counts"]}
        if sorted(counts) != sorted(blocks):
            log.warning("ignoring stored tyr round result in %s (other blocks)", self.folder)
            return None
        return counts, float(state["fitness"])

    def save_verdicts(self, verdicts: list[tuple[Structure, Verdict]], refit: dict[str, Any]) -> None:
        """The finalists the stage has judged so far (each as offered, and its verdict), and the
        stage's settings that made them (`refit`: not part of the round's fingerprint)."""
        rows = [
            {"offered": offered.to_dict(), "structure": v.structure.to_dict(), "held_loss": v.held_loss}
            for offered, v in verdicts
        ]
        data = {"fingerprint": self.fingerprint, "refit": refit, "rows": rows}
        write_atomic(self.folder / "finalists.json", json.dumps(data).encode())

    def load_verdicts(self, refit: dict[str, Any]) -> list[tuple[Structure, Verdict]]:
        state = self._read("finalists.json", "the finalists are judged again")
        if state is None or state["refit"] != refit:
            return []
        return [
            (Structure.from_dict(r["offered"]), Verdict(Structure.from_dict(r["structure"]), float(r["held_loss"])))
            for r in state["rows"]
        ]

    def _read(self, name: str, otherwise: str) -> dict[str, Any] | None:
        path = self.folder / name
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
            if state.pop("fingerprint") != self.fingerprint:
                raise ValueError("a different round's state")
            return state
        except Exception as exc:  # noqa: BLE001  (an unreadable file is redone, never fatal)
            log.warning("ignoring stored tyr state %s (%s); %s", path, exc, otherwise)
            return None


def _metadata(data: bytes) -> dict[str, str]:
    size = int.from_bytes(data[:8], "little")
    if size <= 0 or size > len(data) - 8:
        raise ValueError("truncated header")
    return json.loads(data[8 : 8 + size]).get("__metadata__", {})
