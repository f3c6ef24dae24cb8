"""Fixtures for the service tests: a real database with migrations applied, a real Celery worker
in a subprocess, and the FastAPI app through TestClient. Always on the embedded default (SQLite +
Celery's SQLAlchemy transport in a tmp dir); also on PostgreSQL + Redis when
GISP_TEST_DATABASE_URL / GISP_TEST_BROKER_URL are set."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("GISP_SHARED", REPO.parent / "shared"))
MODEL_ROOT = SHARED / "models"
MODEL = "stories260K"
TEXT = SHARED / "data" / "tinystories" / "tinystories_val.txt"
HEARTBEAT_TIMEOUT = 3.0
METRICS_TOKEN = "operator-token-for-tests"

TINY = {"model": MODEL, "objective": "perplexity", "targets": [0.2, 0.4], "steps": 4, "samples": 8, "seq_len": 64}
# long enough (a few seconds, tens of steps) to act on a job while it runs
SLOW = {**TINY, "targets": [0.1, 0.5], "steps": 24, "samples": 16, "seq_len": 128}


def pytest_collection_modifyitems(config, items) -> None:
    """Every service test is marked `service`; an `embedded_only` one runs on the embedded back-end
    alone (its PostgreSQL + Redis copy is deselected): what it checks is the engine's work carried
    through the worker, which both back-ends carry alike, and the second copy cost CI minutes."""
    kept, dropped = [], []
    for item in items:
        if "tests/service" in str(item.fspath):
            item.add_marker(pytest.mark.service)
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("backend") == "postgres-redis"
        (dropped if on_postgres and item.get_closest_marker("embedded_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def assets() -> None:
    if not (MODEL_ROOT / MODEL / "config.json").is_file() or not TEXT.is_file():
        pytest.skip(f"service tests need {MODEL_ROOT / MODEL} and {TEXT} (set GISP_SHARED)")


# ----------------------------------------------------------------------------------------- backends
def _postgres_database(base_url: str) -> Iterator[str]:
    """A fresh database for this session, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"gisp_test_{secrets.token_hex(4)}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


SHARED_KOMBU_KEYS = ("unacked", "unacked_index", "unacked_mutex", "_kombu.binding_deadlines")


def _redis_keys_present(url: str) -> set[str]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return {k for k in SHARED_KOMBU_KEYS if client.exists(k)}
    finally:
        client.close()


def _flush_redis(url: str, queue: str, existed: set[str]) -> None:
    """Delete this session's queue and the kombu bookkeeping keys it created (not ones that were there)."""
    import redis

    client = redis.Redis.from_url(url)
    keys = [queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
    keys += [k for k in SHARED_KOMBU_KEYS if k not in existed]
    keys += [k for k in client.scan_iter(f"{queue}\x06\x16*")]  # priority sub-queues
    client.delete(*keys)
    client.close()


@dataclass
class Backend:
    name: str
    database_url: str | None  # None: the SQLite default under the data dir
    broker_url: str | None


BACKENDS = ["embedded", "postgres-redis"]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> Iterator[Backend]:
    if request.param == "embedded":
        yield Backend("embedded", None, None)
        return
    db_url, broker_url = os.environ.get("GISP_TEST_DATABASE_URL"), os.environ.get("GISP_TEST_BROKER_URL")
    if not db_url or not broker_url:
        pytest.skip("set GISP_TEST_DATABASE_URL and GISP_TEST_BROKER_URL to run on PostgreSQL + Redis")
    queue = f"prune-test-{secrets.token_hex(3)}"
    existed = _redis_keys_present(broker_url)
    for url in _postgres_database(db_url):
        os.environ["GISP_TEST_QUEUE"] = queue
        try:
            yield Backend("postgres-redis", url, broker_url)
        finally:
            _flush_redis(broker_url, queue, existed)


# ----------------------------------------------------------------------------------------- the worker
@dataclass
class WorkerProcess:
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> None:
        from gisp_service.api.cli import worker_command

        self.starts += 1
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            worker_command(self.env["GISP_QUEUE"]), env=self.env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.log.read_text(errors="replace").count(" ready.") >= self.starts:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready:\n{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Service:
    backend: Backend
    settings: object
    client: object
    worker: WorkerProcess
    keys: dict[str, str] = field(default_factory=dict)

    def headers(self, tenant: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    @property
    def rt(self):
        return self.client.app.state.ctx.rt


# a tyr job with this seed kills its worker once it has built the first target's second ladder layer
# (worker/faults.py; test_tyr_job.py): every other job runs normally, and a resumed one passes it
TYR_FAULT_SEED = 5151


def service_env(backend: Backend, data_dir: Path) -> dict[str, str]:
    """The service's environment in the tests: short heartbeats and reconcile passes, one torch thread."""
    env = {
        "GISP_DATA_DIR": str(data_dir),
        "GISP_MODEL_ROOTS": str(MODEL_ROOT),
        "GISP_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "GISP_RECONCILE_INTERVAL": "1",
        "GISP_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
        "GISP_AUTH": "on",
        "GISP_TORCH_THREADS": "1",
        "GISP_DATASET_MIRRORS": str(data_dir / "mirrors"),  # hub ids the worker reads from local folders
        "HF_HUB_OFFLINE": "1",  # a hub id that is not cached fails at once instead of retrying the network
        # hub ids are allowed but not checked at submit (no hub here), so the worker's failure path is reached
        "GISP_ALLOWED_MODELS": "local,*",
        "GISP_HUB_URL": "",
        "GISP_RATE_JOBS_PER_MINUTE": "0",  # the suite submits hundreds of jobs a minute; test_limits sets its own
        "GISP_RATE_UPLOADS_PER_MINUTE": "0",
        "GISP_METRICS_TOKEN": METRICS_TOKEN,
        "GISP_QUEUE": os.environ.get("GISP_TEST_QUEUE", "prune") if backend.broker_url else "prune",
        "GISP_FAULT_EXIT_AT": f"{TYR_FAULT_SEED}:tyr:0.3:1:ladder:2",
    }
    if backend.database_url:
        env["GISP_DATABASE_URL"] = backend.database_url
    if backend.broker_url:
        env["GISP_BROKER_URL"] = backend.broker_url
    return env


def celery_bin(tmp_path: Path) -> Path:
    """A folder whose `celery` is this interpreter's, for docker/entrypoint-worker.sh to find first
    on PATH (a venv that sees Celery through --system-site-packages has no `celery` script of its own)."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / "celery"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m celery "$@"\n')
    script.chmod(0o755)
    return folder


def settings_with_key(env: dict[str, str], tenant: str):
    """The service's settings from its GISP_* variables, the database migrated, and a new API key
    of `tenant` (for stacks that tests start themselves)."""
    from gisp_service.core.runtime import Runtime
    from gisp_service.core.settings import Settings
    from gisp_service.db.migrate import upgrade
    from gisp_service.db.repos.tenants import create_key
    from gisp_service.db.session import write_transaction

    settings = Settings(**{k.removeprefix("GISP_").lower(): v for k, v in env.items() if k.startswith("GISP_")})
    upgrade(settings.db_url)
    rt = Runtime.build(settings)
    with write_transaction(rt.sessions) as session:
        key = create_key(session, tenant)
    rt.close()
    return settings, key


@pytest.fixture(scope="session")
def service(assets, backend: Backend, tmp_path_factory) -> Iterator[Service]:
    import torch
    from fastapi.testclient import TestClient

    from gisp_service.api.app import create_app
    from gisp_service.core.runtime import Runtime
    from gisp_service.core.settings import Settings
    from gisp_service.db.migrate import upgrade
    from gisp_service.db.repos.tenants import create_key
    from gisp_service.db.session import write_transaction

    torch.set_num_threads(1)  # the test process materializes checkpoints; keep it off the worker's core
    data_dir = tmp_path_factory.mktemp(f"gisp-{backend.name}")
    env = service_env(backend, data_dir)
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    settings = Settings(**{k.removeprefix("GISP_").lower(): v for k, v in env.items()})
    upgrade(settings.db_url)
    # one key through the real CLI, started while the worker warms up; the other directly
    cli = subprocess.Popen(
        [sys.executable, "-m", "gisp.cli", "admin", "create-key", "--tenant", "alice"],
        env=full_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = WorkerProcess(full_env, data_dir / "worker.log")
    worker.start()
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    keys = {"alice": out.strip().splitlines()[-1]}
    with write_transaction(Runtime.build(settings).sessions) as session:
        keys["bob"] = create_key(session, "bob")
    try:
        with TestClient(create_app(settings)) as client:
            yield Service(backend, settings, client, worker, keys)
    finally:
        worker.stop()


# ----------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="session")
def text_dataset(service: Service) -> dict:
    with TEXT.open("rb") as handle:
        response = service.client.post(
            "/v1/datasets", files={"file": ("tinystories.txt", handle, "text/plain")}, headers=service.headers()
        )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="session")
def finished_job(service, text_dataset) -> dict:
    """A tiny job of tenant alice, run to the end by the real worker."""
    response = submit(service, {**TINY, "dataset_id": text_dataset["id"]})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] in ("queued", "running")
    job = wait_finished(service, job["id"])
    assert job["status"] == "succeeded", job
    return job


def submit(service: Service, body: dict, tenant: str = "alice", **headers: str):
    return service.client.post("/v1/jobs", json=body, headers={**service.headers(tenant), **headers})


def wait_for(service: Service, job_id: str, predicate, timeout: float = 120.0, tenant: str = "alice") -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = service.client.get(f"/v1/jobs/{job_id}", headers=service.headers(tenant)).json()
        if predicate(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; job is {job}\n{service.worker.log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def wait_finished(service: Service, job_id: str, timeout: float = 120.0, tenant: str = "alice") -> dict:
    return wait_for(service, job_id, lambda j: j["status"] in ("succeeded", "failed", "cancelled"), timeout, tenant)


def seed_resume_state(service, job_id: str) -> Path:
    """A file where a `tyr` run keeps its ladders to resume the job, beside its trajectory (what is
    discarded when a job ends does not depend on its method); returns the `tyr/` folder."""
    folder = service.rt.store.job_dir(job_id) / "tyr" / "target-0.5000" / "round-1-0123456789abcdef"
    folder.mkdir(parents=True)
    (folder / "layer-0000.safetensors").write_bytes(b"ladders")
    return folder.parent.parent
