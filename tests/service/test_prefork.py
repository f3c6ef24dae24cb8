"""The production worker, as docker/entrypoint-worker.sh starts it (prefork, concurrency 1, one
task per child), on PostgreSQL + Redis: a dozen jobs back to back all succeed, and a warm
shutdown hands the job of the child back to the queue.

Each job runs in a child forked from a parent whose reconciler thread talks to the database. A
pool built before the fork and used on both sides made jobs fail with `DuplicatePreparedStatement`
(issue 12, item 9); this is that shape, end to end."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.service.conftest import (
    REPO,
    SLOW,
    TEXT,
    TINY,
    _flush_redis,
    _redis_keys_present,
    celery_bin,
    service_env,
    settings_with_key,
)

pytestmark = pytest.mark.service

ENTRYPOINT = REPO / "docker" / "entrypoint-worker.sh"
JOBS = 12


def _wait_ready(process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if " ready." in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"worker not ready:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Prefork:
    client: object
    headers: dict[str, str]
    dataset_id: str
    worker: subprocess.Popen
    log: Path


@pytest.fixture(scope="module")
def prefork(assets, backend, tmp_path_factory) -> Iterator[Prefork]:
    """The API in this process and docker/entrypoint-worker.sh in a subprocess, on a queue of their own."""
    if backend.name != "postgres-redis":
        pytest.skip("the prefork defect is in the production shape: runs on the PostgreSQL + Redis backend")
    from fastapi.testclient import TestClient

    from gisp_service.api.app import create_app

    tmp_path = tmp_path_factory.mktemp("prefork")
    queue = f"prune-prefork-{secrets.token_hex(3)}"
    env = {**service_env(backend, tmp_path), "GISP_QUEUE": queue}
    settings, key = settings_with_key(env, "prefork")
    headers = {"Authorization": f"Bearer {key}"}
    existed = _redis_keys_present(backend.broker_url)
    log = tmp_path / "worker.log"
    worker_env = {
        **os.environ,
        **env,
        "PATH": f"{celery_bin(tmp_path)}:{os.environ.get('PATH', '')}",
        "HOSTNAME": f"prefork-{secrets.token_hex(3)}",
        "PYTHONPATH": str(REPO),
    }
    with log.open("ab") as handle:
        worker = subprocess.Popen(
            ["sh", str(ENTRYPOINT)], env=worker_env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(worker, log)
        with TestClient(create_app(settings)) as client:
            with TEXT.open("rb") as text:
                dataset = client.post("/v1/datasets", files={"file": ("t.txt", text)}, headers=headers).json()
            yield Prefork(client, headers, dataset["id"], worker, log)
    finally:
        _stop(worker)
        _flush_redis(backend.broker_url, queue, existed)


def _finished(prefork: Prefork, ids: list[str], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    jobs: dict[str, dict] = {}
    while len(jobs) < len(ids) and time.monotonic() < deadline and prefork.worker.poll() is None:
        for job_id in ids:
            if job_id not in jobs:
                job = prefork.client.get(f"/v1/jobs/{job_id}", headers=prefork.headers).json()
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    jobs[job_id] = job
        time.sleep(0.5)
    return jobs


def test_prefork_worker_runs_a_dozen_jobs_on_postgres(prefork):
    ids = []
    for seed in range(JOBS):
        body = {**TINY, "dataset_id": prefork.dataset_id, "seed": seed}
        response = prefork.client.post("/v1/jobs", json=body, headers=prefork.headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    jobs = _finished(prefork, ids, timeout=60 * JOBS)
    failed = {job_id: (job["status"], job.get("error")) for job_id, job in jobs.items() if job["status"] != "succeeded"}
    text = prefork.log.read_text(errors="replace")
    assert len(jobs) == JOBS, f"only {len(jobs)} of {JOBS} finished:\n{text[-4000:]}"
    assert not failed, f"{len(failed)} of {JOBS} jobs did not succeed: {failed}\n{text[-4000:]}"
    assert "InvalidSqlStatementName" not in text and "DuplicatePreparedStatement" not in text, text[-4000:]


def test_warm_shutdown_hands_the_childs_job_back(prefork):
    """SIGTERM reaches the parent only; the job running in the child still stops at its next step
    and goes back to the queue (instead of running on until Docker kills it)."""
    body = {**SLOW, "dataset_id": prefork.dataset_id, "seed": 99, "steps": 200}
    job_id = prefork.client.post("/v1/jobs", json=body, headers=prefork.headers).json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = prefork.client.get(f"/v1/jobs/{job_id}", headers=prefork.headers).json()
        if job["status"] == "running" and job["progress"]["step"] >= 2:
            break
        time.sleep(0.2)
    assert job["status"] == "running", job
    prefork.worker.send_signal(signal.SIGTERM)
    prefork.worker.wait(timeout=60)  # the warm shutdown ends when the child has handed the job back
    handed_back = prefork.client.get(f"/v1/jobs/{job_id}", headers=prefork.headers).json()
    assert handed_back["status"] == "queued" and handed_back["progress"]["step"] < body["steps"], handed_back
    events = prefork.client.get(f"/v1/jobs/{job_id}/events?limit=1000", headers=prefork.headers).json()["data"]
    assert any(e["type"] == "queued" and e["data"].get("reason") == "worker shutdown" for e in events)
