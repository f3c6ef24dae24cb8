"""Checksums and safe extraction of downloaded checkpoint archives.

Every member is checked before anything is written: an archive from the network must not be able
to write outside the target folder (absolute names, `..` components, links, devices).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from gisp_service.client.errors import ChecksumMismatchError, GispClientError, UnsafeArchiveError

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def etag_digest(etag: str | None) -> str | None:
    """The hex digest inside an ETag header (`"abc"`, `W/"abc"`), or None without one."""
    if not etag:
        return None
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"').lower() or None


def verify_sha256(path: str | os.PathLike[str], expected: str) -> str:
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumMismatchError(f"sha256 of the download is {actual}, the server announced {expected}")
    return actual


def check_members(members: list[tarfile.TarInfo]) -> None:
    """Raise UnsafeArchiveError on the first member that could escape the extraction folder."""
    for member in members:
        name = member.name
        if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name:
            raise UnsafeArchiveError(f"archive member {name!r} has an absolute or non-POSIX path")
        if ".." in PurePosixPath(name).parts:
            raise UnsafeArchiveError(f"archive member {name!r} points outside the target folder")
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"archive member {name!r} is a link or special file")


def extract_archive(tar_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Extract into `out_dir` (which must be absent or empty) through a staging folder beside it.

    An archive holding one top-level folder is unwrapped, so `out_dir` itself becomes the model
    folder either way.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GispClientError(f"output folder {str(out)!r} exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = tar.getmembers()
            check_members(members)
            tar.extractall(staging, members=members, filter="data")
        root = staging
        entries = list(staging.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        if out.exists():
            out.rmdir()
        os.replace(root, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
