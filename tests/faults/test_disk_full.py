"""A full disk under the artifact store (a real one: a small tmpfs mounted as GISP_DATA_DIR, the
database and broker elsewhere, as in production where PostgreSQL has its own volume): a job that
cannot write its trajectory fails with `disk_full` and says so; a checkpoint that cannot be built
answers 507 problem+json and leaves nothing half-written or registered; the service keeps
answering, and once space is freed the same download succeeds."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import KILLABLE, stack

pytestmark = [pytest.mark.service, pytest.mark.timeout(600)]


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _leftovers(root: Path) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.endswith(".tmp") or p.is_dir() and p.parent.name == "checkpoints"
    ]


def test_a_full_disk_fails_the_job_clearly_and_the_service_keeps_answering(assets, tmp_path, small_disk) -> None:
    databases = tmp_path / "db"
    databases.mkdir()
    with stack(
        tmp_path,
        database_url=f"sqlite:///{databases / 'gisp.db'}",
        broker_url=f"sqla+sqlite:///{databases / 'broker.db'}",
        data_dir=small_disk,
    ) as s:
        before = s.finished(s.submit({**KILLABLE, "steps": 2})["id"])
        assert before["status"] == "succeeded"
        filler = _fill(small_disk)

        job = s.finished(s.submit({**KILLABLE, "seed": 3})["id"])
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "disk_full"
        assert "no space left" in job["error"]["message"].lower()
        assert s.events(job["id"])[-1]["type"] == "error"
        assert job["checkpoint_count"] == 0

        listing = s.client.get(f"/v1/jobs/{before['id']}/checkpoints", headers=s.headers).json()["data"]
        response = s.client.get(f"/v1/checkpoints/{listing[0]['id']}/download", headers=s.headers)
        assert response.status_code == 507, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "full" in response.json()["detail"]
        checkpoint = s.client.get(f"/v1/checkpoints/{listing[0]['id']}", headers=s.headers).json()
        assert checkpoint["sha256"] is None  # nothing was registered as built
        assert _leftovers(small_disk / "artifacts") == []
        assert s.client.get("/healthz").status_code == 200
        assert s.client.get("/v1/jobs", headers=s.headers).status_code == 200

        filler.unlink()
        assert len(s.checkpoint_tars(before["id"])) == 2  # the same downloads, once there is room
