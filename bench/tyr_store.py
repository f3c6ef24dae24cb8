"""What tyr's resumable state costs (gisp/tyr/store.py): wall time of one tyr run with the run's
folder (ladders written to disk, rungs read from their files on every use) against the same run
without one (ladders in memory), the most bytes its `tyr/` folder held, and a run stopped in the
second target's ladders then resumed (with the same checkpoints' tensors, checked).

    GISP_SHARED=/path/to/shared OMP_NUM_THREADS=1 python bench/tyr_store.py [--model PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from gisp.config import PruneSettings
from gisp.errors import PruningStopped
from gisp.pruner import PruneObserver
from gisp.run import run
from gisp.trajectory import Trajectory

SETTINGS = dict(targets=[0.3, 0.5], samples=32, seq_len=128, heldout=0, method="tyr", tyr_generations=2)


class Watch(PruneObserver):
    def __init__(self, folder: Path | None, stop_at: tuple[float, int] | None = None) -> None:
        self.folder, self.stop_at, self.peak, self.stop = folder, stop_at, 0, False

    def on_search(self, progress) -> None:
        if self.folder is not None and (self.folder / "tyr").exists():
            size = sum(p.stat().st_size for p in (self.folder / "tyr").rglob("*") if p.is_file())
            self.peak = max(self.peak, size)
        at = (progress.target, progress.done)
        self.stop = self.stop or (progress.phase == "ladder" and self.stop_at == at)

    def should_stop(self) -> bool:
        return self.stop

    def on_step(self, report, trajectory: Trajectory) -> None:
        if self.folder is not None:
            trajectory.save(self.folder / "trajectory.json")


def tensors(folder: Path) -> str:
    files = sorted((folder / "reconstruction").glob("*.safetensors"))
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(common.STORIES))
    parser.add_argument("--data", default=str(common.TINYSTORIES))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = PruneSettings(**SETTINGS)
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            started = time.perf_counter()
            run(args.model, args.data, settings, Watch(None), reconstruction_dir=root / "memory")
            memory = time.perf_counter() - started
            watch = Watch(root / "disk")
            started = time.perf_counter()
            run(args.model, args.data, settings, watch, reconstruction_dir=root / "disk", state_dir=root / "disk")
            disk = time.perf_counter() - started
            same = tensors(root / "memory") == tensors(root / "disk")
            left = list((root / "disk" / "tyr").rglob("*.safetensors"))
            print(
                f"repeat {repeat + 1}: in memory {memory:.1f} s, on disk {disk:.1f} s "
                f"(peak tyr/ {watch.peak / 1e6:.2f} MB, files left {len(left)}), same tensors {same}"
            )
            folder = root / "resumed"
            started = time.perf_counter()
            try:
                run(
                    args.model,
                    args.data,
                    settings,
                    Watch(folder, (0.5, 4)),
                    reconstruction_dir=folder,
                    state_dir=folder,
                )
            except PruningStopped:
                pass
            first = time.perf_counter() - started
            started = time.perf_counter()
            resume = Trajectory.load(folder / "trajectory.json")
            run(
                args.model,
                args.data,
                settings,
                Watch(folder),
                resume=resume,
                reconstruction_dir=folder,
                state_dir=folder,
            )
            second = time.perf_counter() - started
            same = tensors(root / "memory") == tensors(folder)
            print(
                f"  stopped after target 0.5's 4th ladder layer: {first:.1f} s, resumed {second:.1f} s "
                f"(total {first + second:.1f} s), same tensors {same}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
