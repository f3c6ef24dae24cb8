"""The artifact store: a local directory where every write is atomic (temp file in the same
directory, fsync, rename), so a crash never leaves a half-written file under a final name.

Layout under the root:
  uploads/<sha256>.<format>         uploaded datasets as sent, and the canonical .jsonl made of a table
                                    (by content: an upload is never lost or duplicated)
  jobs/<job_id>/trajectory.json     a job's resumable state, rewritten every step
  jobs/<job_id>/hub.jsonl           the rows a job streamed from a hub dataset (canonical .jsonl)
  checkpoints/<ckpt_id>/            a materialized checkpoint folder, and <ckpt_id>.tar beside it
  checkpoints/<ckpt_id>.gguf        the checkpoint as a GGUF file (llama.cpp), built on first request
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary handle; the file appears at `path` only if the block completes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # uploads --------------------------------------------------------------------------------
    def upload_path(self, sha256: str, fmt: str) -> Path:
        return self.root / "uploads" / f"{sha256}.{fmt}"

    def save_upload(self, source: BinaryIO, limit: int, suffix: str) -> tuple[Path, str, int]:
        """Copy a stream into a temp file (failing past `limit` bytes) and return its path,
        sha256 and size. The caller validates it, then `commit_upload` files it by content."""
        staging = self.root / "uploads" / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=staging, suffix=suffix)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    size += len(chunk)
                    if size > limit:
                        raise UploadTooLarge(limit)
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp), digest.hexdigest(), size

    def stage_file(self, write: Callable[[BinaryIO], None], suffix: str) -> tuple[Path, str, int]:
        """A staged file that `write` fills (e.g. a dataset's canonical .jsonl), with its sha256 and size."""
        staging = self.root / "uploads" / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=staging, suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            with open(tmp, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp), digest.hexdigest(), Path(tmp).stat().st_size

    def commit_upload(self, staged: Path, sha256: str, fmt: str) -> Path:
        final = self.upload_path(sha256, fmt)
        if final.exists():
            staged.unlink(missing_ok=True)
        else:
            os.replace(staged, final)
            _fsync_dir(final.parent)
        return final

    def hub_data_path(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id / "hub.jsonl"

    # trajectories ---------------------------------------------------------------------------
    def trajectory_path(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id / "trajectory.json"

    def reconstruction_path(self, job_id: str, checkpoint_name: str) -> Path:
        """A reconstructed checkpoint's refit tensors (the engine's safetensors bytes), beside the trajectory."""
        return self.trajectory_path(job_id).parent / "reconstruction" / f"{checkpoint_name}.safetensors"

    def write_bytes(self, path: Path, data: bytes) -> None:
        with atomic_writer(path) as handle:
            handle.write(data)

    # checkpoints ----------------------------------------------------------------------------
    def checkpoint_dir(self, checkpoint_id: str) -> Path:
        return self.root / "checkpoints" / checkpoint_id

    def checkpoint_tar(self, checkpoint_id: str) -> Path:
        return self.root / "checkpoints" / f"{checkpoint_id}.tar"

    def checkpoint_gguf(self, checkpoint_id: str) -> Path:
        return self.root / "checkpoints" / f"{checkpoint_id}.gguf"
