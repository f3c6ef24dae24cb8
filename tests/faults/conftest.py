"""The fault suite's stacks: the service's real processes, started per test so that each fault
(a dying worker, a restarted Redis, terminated database connections, a full disk) hits a stack of
its own. A stack is the API (FastAPI through TestClient, in this process, as the service tests
use it) and a separate Celery worker subprocess: the embedded one (`--pool solo`, as `gisp serve`
starts it) or the production one (docker/entrypoint-worker.sh: prefork, one task per child), on
SQLite + the SQLAlchemy broker or on PostgreSQL (a database of its own) + Redis. Heartbeats and
reconcile passes are short (tests/service/conftest.py `service_env`)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live import free_port
from tests.service.conftest import (
    MODEL,
    REPO,
    TEXT,
    Backend,
    WorkerProcess,
    _postgres_database,
    assets,  # noqa: F401  (the fixture: the suite needs the shared model and text)
    celery_bin,
    service_env,
    settings_with_key,
)

# small and quick, yet a dozen steps long: a fault can land between any two of them
KILLABLE = {"model": MODEL, "objective": "perplexity", "targets": [0.2, 0.4], "steps": 12, "samples": 8, "seq_len": 64}
TERMINAL = ("succeeded", "failed", "cancelled")
ENTRYPOINT = REPO / "docker" / "entrypoint-worker.sh"


def production_database_url() -> str:
    """The test machine's PostgreSQL (CI sets it), or a skip that says so. (Redis: the tests start
    their own redis-server.)"""
    db_url = os.environ.get("GISP_TEST_DATABASE_URL")
    if not db_url:
        pytest.skip("set GISP_TEST_DATABASE_URL for the production shape (PostgreSQL)")
    return db_url


@contextmanager
def own_database() -> Iterator[str]:
    """A PostgreSQL database created for this test (uniquely named), dropped afterwards."""
    yield from _postgres_database(production_database_url())


@dataclass
class RedisServer:
    """A redis-server of this test's own on a free port (never the shared one), with an append-only
    file so that a restart keeps the queue, as a production Redis with persistence does."""

    folder: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.port = self.port or free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
            + ["--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        import redis

        deadline = time.monotonic() + 30
        while True:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline and self.process.poll() is None, "redis-server did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Stack:
    client: object
    headers: dict[str, str]
    settings: object
    worker: WorkerProcess
    dataset: dict

    @property
    def rt(self):
        return self.client.app.state.ctx.rt

    def submit(self, body: dict) -> dict:
        response = self.client.post("/v1/jobs", json={**body, "dataset_id": self.dataset["id"]}, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        return self.client.get(f"/v1/jobs/{job_id}", headers=self.headers).json()

    def events(self, job_id: str) -> list[dict]:
        response = self.client.get(f"/v1/jobs/{job_id}/events?limit=1000", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def wait(self, job_id: str, predicate: Callable[[dict], bool], timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if predicate(job):
                return job
            assert time.monotonic() < deadline, f"timed out; job is {job}\n{self.worker.log.read_text()[-3000:]}"
            time.sleep(0.05)

    def finished(self, job_id: str, timeout: float = 180) -> dict:
        return self.wait(job_id, lambda j: j["status"] in TERMINAL, timeout)

    def download(self, checkpoint_id: str) -> bytes:
        response = self.client.get(f"/v1/checkpoints/{checkpoint_id}/download", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.content

    def checkpoint_tars(self, job_id: str) -> list[bytes]:
        listing = self.client.get(f"/v1/jobs/{job_id}/checkpoints", headers=self.headers).json()["data"]
        return [self.download(c["id"]) for c in sorted(listing, key=lambda c: c["target_sparsity"])]


class EntrypointWorker(WorkerProcess):
    """docker/entrypoint-worker.sh, the production worker (prefork, one task per child)."""

    def start(self) -> None:
        self.starts += 1
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            ["sh", str(ENTRYPOINT)], env=self.env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while self.log.read_text(errors="replace").count(" ready.") < self.starts:
            assert self.process.poll() is None, self.log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, self.log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)


@contextmanager
def stack(
    folder: Path,
    database_url: str | None = None,
    broker_url: str | None = None,
    env: dict[str, str] | None = None,
    production_worker: bool = False,
    text: bytes | None = None,
    data_dir: Path | None = None,
) -> Iterator[Stack]:
    """API + worker with logs under `folder` and the data dir at `data_dir` (default: inside
    `folder`); `env` adds settings; the dataset is an upload of `text` (default: the first 200 kB
    of TinyStories)."""
    data_dir = data_dir or folder / "data"
    from fastapi.testclient import TestClient

    from gisp_service.api.app import create_app

    queue = f"prune-faults-{secrets.token_hex(3)}"
    variables = {**service_env(Backend("faults", database_url, broker_url), data_dir), "GISP_QUEUE": queue}
    variables.update(env or {})
    settings, key = settings_with_key(variables, "faults")
    full_env = {**os.environ, **variables, "PYTHONPATH": str(REPO), "HOSTNAME": f"faults-{secrets.token_hex(3)}"}
    worker_class = EntrypointWorker if production_worker else WorkerProcess
    if production_worker:
        full_env["PATH"] = f"{celery_bin(folder)}:{os.environ.get('PATH', '')}"
    worker = worker_class(full_env, folder / "worker.log")
    worker.start()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with TestClient(create_app(settings)) as client:
            payload = text if text is not None else TEXT.read_bytes()[:200_000]
            response = client.post("/v1/datasets", files={"file": ("stories.txt", payload)}, headers=headers)
            assert response.status_code == 201, response.text
            yield Stack(client, headers, settings, worker, response.json())
    finally:
        worker.stop()


# fault injection for the poison-job tests (tests/faults/test_poison.py): the process running the
# job with this seed exits at step 1 (worker/faults.py); every other job runs normally
POISON = 4242
FAULT_ENV = {
    "GISP_FAULT_EXIT_AT": f"{POISON}:1",
    "GISP_MAX_ATTEMPTS": "3",
    "GISP_HEARTBEAT_TIMEOUT": "3",
    "GISP_RECONCILE_INTERVAL": "1",
    "GISP_TORCH_THREADS": "1",
}


@dataclass
class Production:
    stack: Stack
    redis: RedisServer
    database_url: str


@pytest.fixture(scope="session")
def production(request, tmp_path_factory) -> Iterator[Production]:
    """The production shape, shared by the tests that fault it in turn: PostgreSQL (a database of
    its own), a redis-server of its own, the API, and docker/entrypoint-worker.sh's prefork worker."""
    request.getfixturevalue("assets")
    folder = tmp_path_factory.mktemp("production")
    redis = RedisServer(folder / "redis")
    redis.start()
    try:
        with own_database() as database_url:
            with stack(folder, database_url, redis.url, env=FAULT_ENV, production_worker=True) as s:
                yield Production(s, redis, database_url)
    finally:
        redis.stop()
