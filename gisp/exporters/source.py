"""What an exporter reads: a checkpoint folder, or a trajectory whose checkpoint is first written
as one (into a temporary folder that is removed afterwards)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gisp.exporters.base import ExportError


@contextmanager
def checkpoint_folder(source: str | Path, target: float | None = None) -> Iterator[Path]:
    """Yield a checkpoint folder for `source`: the folder itself, or, for a trajectory.json (or a
    `gisp prune` output folder holding one) and a `target`, that checkpoint materialized."""
    path = Path(source).expanduser()
    trajectory_file = path if path.is_file() else path / "trajectory.json"
    if path.is_dir() and (path / "config.json").is_file() and target is None:
        yield path
        return
    if target is None:
        if trajectory_file.is_file():
            raise ExportError(f"{source} is a pruning trajectory: name the checkpoint with --target", field="target")
        raise ExportError(f"{source} is neither a checkpoint folder nor a trajectory.json", field="checkpoint")
    if not trajectory_file.is_file():
        raise ExportError(f"--target needs a trajectory.json; {source} has none", field="checkpoint")
    from gisp.export import export_checkpoint, reconstruction_file
    from gisp.trajectory import Trajectory

    trajectory = Trajectory.load(trajectory_file)
    record = trajectory.checkpoint(target)  # a clear error before the base model is loaded
    tensors = reconstruction_file(trajectory_file.parent, record) if record.reconstruction else None
    scratch = Path(tempfile.mkdtemp(prefix="gisp-export-"))
    try:
        yield export_checkpoint(trajectory, target, scratch / f"sparsity-{target:.2f}", tensors=tensors)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
