"""Turning a registered checkpoint into a downloadable artifact: rebuild its weights from the
job's trajectory and the base model, write the Hugging Face folder, pack it into a deterministic
tar (sorted names, zeroed times and owners, so the same checkpoint always has the same sha256),
record the sha256. Done once per checkpoint, on first download or eagerly; a file lock keeps two
processes from doing it twice."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from gisp_service.core.artifacts import ArtifactStore, atomic_writer
from gisp_service.db.models import Checkpoint
from gisp_service.db.repos import checkpoints as checkpoint_repo
from gisp_service.db.repos import jobs as job_repo
from gisp_service.db.session import write_transaction


class NotMaterializable(Exception):
    """The job's trajectory is missing: nothing can rebuild this checkpoint's weights."""


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _HashingWriter:
    def __init__(self, handle) -> None:
        self.handle, self.digest = handle, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)


def write_deterministic_tar(folder: Path, out: Path) -> str:
    """Tar the files of `folder` (at the archive root) atomically; return the tar's sha256."""
    with atomic_writer(out) as handle:
        writer = _HashingWriter(handle)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[call-overload]
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                info = tarfile.TarInfo(path.relative_to(folder).as_posix())
                info.size, info.mtime, info.mode = path.stat().st_size, 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with path.open("rb") as source:
                    tar.addfile(info, source)
        return writer.digest.hexdigest()


def _record_for(checkpoint: Checkpoint):
    from gisp.structure import Structure
    from gisp.trajectory import CheckpointRecord

    return CheckpointRecord(
        target=checkpoint.target_sparsity,
        sparsity=checkpoint.sparsity,
        parameter_count=checkpoint.parameter_count,
        prunable_parameter_count=checkpoint.prunable_parameter_count,
        flops_per_token=checkpoint.flops_per_token,
        step=checkpoint.step,
        loss=float("nan"),
        structure=Structure.from_dict(checkpoint.structure),
        metrics=dict(checkpoint.metrics),
    )


def materialize_checkpoint(
    factory: sessionmaker[Session],
    store: ArtifactStore,
    checkpoint_id: str,
    resolve_model: Callable[[str], str],
) -> tuple[Path, str]:
    """Return (tar path, sha256), building the tar first if needed."""
    from gisp.export import export_checkpoint
    from gisp.trajectory import Trajectory

    tar_path = store.checkpoint_tar(checkpoint_id)
    with _file_lock(tar_path.with_suffix(".lock")):
        with write_transaction(factory) as session:
            checkpoint = checkpoint_repo.get_any(session, checkpoint_id)
            if checkpoint is None:
                raise NotMaterializable(f"checkpoint {checkpoint_id} does not exist")
            job = job_repo.get_any(session, checkpoint.job_id)
            assert job is not None
            model_name = job.model
        if checkpoint.sha256 and tar_path.is_file():
            return tar_path, checkpoint.sha256
        trajectory_file = store.trajectory_path(checkpoint.job_id)
        if not trajectory_file.is_file():
            raise NotMaterializable(f"job {checkpoint.job_id} has no stored trajectory")
        trajectory = Trajectory.load(trajectory_file)
        trajectory.base_model = resolve_model(model_name)
        target = checkpoint.target_sparsity
        if not any(abs(c.target - target) < 1e-9 for c in trajectory.checkpoints):
            trajectory.checkpoints.append(_record_for(checkpoint))  # registered, but its step never completed
        folder = store.checkpoint_dir(checkpoint_id)
        export_checkpoint(trajectory, target, folder)
        sha256 = write_deterministic_tar(folder, tar_path)
        shutil.rmtree(folder, ignore_errors=True)  # the tar is the artifact; no second copy
        with write_transaction(factory) as session:
            checkpoint_repo.set_artifact(session, checkpoint_id, sha256, str(tar_path.relative_to(store.root)))
        return tar_path, sha256
