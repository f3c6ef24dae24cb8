"""The artifact store and model references, without a worker: atomic writes, uploads by content,
deterministic tars, and which model names a job may use."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from gisp_service.api.checkpoints.materialize import write_deterministic_tar
from gisp_service.core import model_refs
from gisp_service.core.artifacts import ArtifactStore, UploadTooLarge, atomic_writer

pytestmark = pytest.mark.service


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a" / "file.json"
    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write(b"half")
        raise RuntimeError("crash")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_writer(target) as handle:
        handle.write(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_uploads_are_stored_once_by_content_and_limited(tmp_path):
    store = ArtifactStore(tmp_path)
    paths = []
    for _ in range(2):
        staged, sha, size = store.save_upload(io.BytesIO(b"hello world"), limit=100, suffix=".txt")
        paths.append(store.commit_upload(staged, sha, "txt"))
    assert paths[0] == paths[1] == tmp_path / "uploads" / f"{sha}.txt" and size == 11
    assert list((tmp_path / "uploads" / ".staging").iterdir()) == []
    with pytest.raises(UploadTooLarge):
        store.save_upload(io.BytesIO(b"x" * 101), limit=100, suffix=".txt")
    assert list((tmp_path / "uploads" / ".staging").iterdir()) == []


def test_tar_is_deterministic(tmp_path):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.txt", "a.txt", "sub/c.txt"):
        (folder / name).write_text(name)
    first = write_deterministic_tar(folder, tmp_path / "1.tar")
    for path in folder.rglob("*"):
        os.utime(path, (time.time() + 1000, time.time() + 1000))
    second = write_deterministic_tar(folder, tmp_path / "2.tar")
    assert first == second and (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()


@pytest.mark.parametrize(
    "name, ok",
    [
        ("meta-llama/Llama-3.2-1B", True),
        ("stories", True),
        ("../stories", False),
        ("/etc/passwd", False),
        ("~/models/x", False),
        ("a/b/c", False),
        ("./stories", False),
        ("unknown-local", False),
        ("org/..", False),
    ],
)
def test_model_references(tmp_path, name, ok):
    (tmp_path / "stories").mkdir()
    (tmp_path / "stories" / "config.json").write_text("{}")
    if ok:
        model_refs.check(name, [tmp_path])
    else:
        with pytest.raises(model_refs.InvalidModelRef):
            model_refs.check(name, [tmp_path])
    assert model_refs.resolve("stories", [Path("/nowhere"), tmp_path]) == str(tmp_path / "stories")
    assert model_refs.resolve("org/name", [tmp_path]) == "org/name"
