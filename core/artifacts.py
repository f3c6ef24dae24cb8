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
import time
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
        """Copy a stream into a staging file (failing past `limit` bytes) and return its path,
        sha256 and size. The caller validates it, then `commit_upload` files it by content."""
        handle, tmp = self.open_staging(suffix)
        digest, size = hashlib.sha256(), 0
        try:
            with handle:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    size += len(chunk)
                    if size > limit:
                        raise UploadTooLarge(limit)
                    digest.update(chunk)
                    handle.write(chunk)
                self.close_staging(handle)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, digest.hexdigest(), size

    def open_staging(self, suffix: str) -> tuple[BinaryIO, Path]:
        """A new staging file for an upload that arrives in chunks; `close_staging` makes it durable."""
        staging = self.staging_dir()
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=staging, suffix=suffix)
        return os.fdopen(fd, "wb"), Path(tmp)

    @staticmethod
    def close_staging(handle: BinaryIO) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()

    def stage_file(self, write: Callable[[BinaryIO], None], suffix: str) -> tuple[Path, str, int]:
        """A staged file that `write` fills (e.g. a dataset's canonical .jsonl), with its sha256 and size."""
        handle, tmp = self.open_staging(suffix)
        try:
            with handle:
                write(handle)
                self.close_staging(handle)
            with tmp.open("rb") as source:
                digest = hashlib.file_digest(source, "sha256")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, digest.hexdigest(), tmp.stat().st_size

    def commit_upload(self, staged: Path, sha256: str, fmt: str) -> Path:
        final = self.upload_path(sha256, fmt)
        if final.exists():
            staged.unlink(missing_ok=True)
        else:
            os.replace(staged, final)
            _fsync_dir(final.parent)
        return final

    def staging_dir(self) -> Path:
        return self.root / "uploads" / ".staging"

    def reclaim_staging(self, max_age: float) -> tuple[int, int]:
        """Delete staging files untouched for `max_age` seconds: a live upload writes its file
        at least every chunk, so an older one is what a crashed or killed upload left behind.
        Returns (files, bytes) reclaimed."""
        cutoff, files, size = time.time() - max_age, 0, 0
        for path in self.staging_dir().glob("*") if self.staging_dir().is_dir() else []:
            try:
                stat = path.stat()
                if path.is_file() and stat.st_mtime < cutoff:
                    path.unlink()
                    files, size = files + 1, size + stat.st_size
            except FileNotFoundError:  # committed or reclaimed by another process meanwhile
                continue
        return files, size

    # a job's own folder --------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """Everything the worker keeps for one job: its hub data, trajectory, refits, and the state
        the engine keeps to resume it (`state_dir`, dropped when the job ends)."""
        return self.root / "jobs" / job_id

    def hub_data_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "hub.jsonl"

    def trajectory_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "trajectory.json"

    def reconstruction_path(self, job_id: str, checkpoint_name: str) -> Path:
        """A reconstructed checkpoint's refit tensors (the engine's safetensors bytes), beside the trajectory."""
        return self.job_dir(job_id) / "reconstruction" / f"{checkpoint_name}.safetensors"

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
