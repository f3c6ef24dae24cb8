"""Turning a registered checkpoint into a downloadable artifact: rebuild its weights from the
job's trajectory and the base model, write the Hugging Face folder, then either pack it into a
deterministic tar (sorted names, zeroed times and owners, so the same checkpoint always has the
same sha256) or convert it to a GGUF file for llama.cpp (the engine's `gguf` exporter, f16; also
deterministic), and record that artifact's sha256. Each artifact is built once per checkpoint, on
its first download (the tar also eagerly); a file lock per checkpoint keeps two processes from
building the same one twice."""

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

FORMATS = ("hf", "gguf")  # the tar of the Hugging Face folder, the GGUF file
GGUF_DTYPE = "f16"  # llama.cpp's usual type; `gisp export-gguf` writes others from the tar's folder


class NotMaterializable(Exception):
    """Nothing can build this artifact: the job's trajectory is missing, or the checkpoint cannot
    be written in the format asked for (the reason is the message)."""


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
        reconstruction=checkpoint.reconstruction,
        reconstruction_sha256=checkpoint.reconstruction_sha256,
        unreconstructed_metrics=dict(checkpoint.unreconstructed_metrics or {}),
        reconstruction_rejected=checkpoint.reconstruction_rejected,
    )


def artifact_path(store: ArtifactStore, checkpoint_id: str, format: str) -> Path:
    return store.checkpoint_gguf(checkpoint_id) if format == "gguf" else store.checkpoint_tar(checkpoint_id)


def _write_gguf(folder: Path, out: Path) -> str:
    from gisp.exporters import ExportError, export
    from gisp.gguf_input import file_sha256

    try:
        export(folder, out, "gguf", dtype=GGUF_DTYPE)
    except ExportError as exc:
        raise NotMaterializable(f"it cannot be written as GGUF: {exc.message}") from None
    return file_sha256(out)


def materialize_checkpoint(
    factory: sessionmaker[Session],
    store: ArtifactStore,
    checkpoint_id: str,
    resolve_model: Callable[[str], str],
    format: str = "hf",
) -> tuple[Path, str]:
    """Return (artifact path, sha256) of the checkpoint's `format` artifact, building it first if needed."""
    from gisp.export import export_checkpoint
    from gisp.trajectory import Trajectory

    out = artifact_path(store, checkpoint_id, format)
    with _file_lock(store.checkpoint_tar(checkpoint_id).with_suffix(".lock")):
        with write_transaction(factory) as session:
            checkpoint = checkpoint_repo.get_any(session, checkpoint_id)
            if checkpoint is None:
                raise NotMaterializable(f"checkpoint {checkpoint_id} does not exist")
            job = job_repo.get_any(session, checkpoint.job_id)
            assert job is not None
            model_name = job.model
        recorded = checkpoint.gguf_sha256 if format == "gguf" else checkpoint.sha256
        if recorded and out.is_file():
            return out, recorded
        trajectory_file = store.trajectory_path(checkpoint.job_id)
        if not trajectory_file.is_file():
            raise NotMaterializable(f"job {checkpoint.job_id} has no stored trajectory")
        trajectory = Trajectory.load(trajectory_file)
        trajectory.base_model = resolve_model(model_name)
        target = checkpoint.target_sparsity
        # the row is what was registered (its step or its refit may not have reached the trajectory file)
        trajectory.checkpoints = [c for c in trajectory.checkpoints if abs(c.target - target) >= 1e-9]
        record = _record_for(checkpoint)
        trajectory.checkpoints.append(record)
        tensors = store.reconstruction_path(checkpoint.job_id, record.name) if record.reconstruction else None
        folder = store.checkpoint_dir(checkpoint_id)
        try:
            export_checkpoint(trajectory, target, folder, tensors=tensors)
            sha256 = _write_gguf(folder, out) if format == "gguf" else write_deterministic_tar(folder, out)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the artifact is what is kept; no second copy
        with write_transaction(factory) as session:
            checkpoint_repo.set_artifact(session, checkpoint_id, sha256, str(out.relative_to(store.root)), format)
        return out, sha256
