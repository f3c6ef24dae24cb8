"""The one settings object of the service (API, worker and CLI), read from `GISP_*` variables.

Defaults give the embedded setup: everything under one data directory, SQLite for the database
and Celery's SQLAlchemy transport on a second SQLite file as the broker.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_model_roots() -> str:
    shared = Path(os.environ.get("GISP_SHARED", REPO_ROOT.parent / "shared"))
    return str(shared / "models")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GISP_", extra="ignore")

    data_dir: Path = Path("./.gisp")
    database_url: str = ""  # default: sqlite:///<data_dir>/gisp.db
    broker_url: str = ""  # default: sqla+sqlite:///<data_dir>/broker.db
    model_roots: str = Field(default_factory=_default_model_roots)
    # an upload (streamed to disk in 1 MiB chunks, never held in memory) is refused past this size
    max_upload_bytes: int = 512 * 1024 * 1024
    # an upload's staging file untouched this long was left by a crash (a live upload writes every
    # chunk); the API deletes such files at start and every quarter of this age
    staging_max_age: float = Field(3600.0, gt=0)
    # any other request body (JSON) is refused past this size, declared or counted as it arrives
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # per API key, requests a minute (0: unlimited); per tenant, queued + running jobs and stored
    # upload bytes (0: unlimited); each refusal is a 429 with Retry-After
    rate_jobs_per_minute: int = Field(default=60, ge=0)
    rate_uploads_per_minute: int = Field(default=10, ge=0)
    max_active_jobs: int = Field(default=20, ge=0)
    max_tenant_bytes: int = Field(default=20 * 1024**3, ge=0)
    # hub datasets: folders that mirror hub ids (<root>/<org>/<name>) for closed networks, and the row cap
    dataset_mirrors: str = ""
    hub_max_rows: int = 100_000
    auth: Literal["on", "off"] = "on"
    # models a job may name: `local` (every model under model_roots), hub ids or patterns
    # (`HuggingFaceTB/*`), `*` for any hub id; the default suits a closed network: local models only
    allowed_models: str = "local"
    # the hub a hub id is checked against at submit (a HEAD, cached) and the worker downloads from;
    # empty: no hub (nothing is fetched, the worker runs offline)
    hub_url: str = "https://huggingface.co"
    hub_timeout: float = Field(default=3.0, gt=0)  # seconds for the submit check and the worker's metadata calls
    eager_materialize: bool = False
    # a dead worker's job is taken over within heartbeat_timeout + reconcile_interval (+ the next
    # worker's start): 30 + 10 s by default; shorter risks presuming a stalled (not dead) worker dead
    heartbeat_timeout: float = Field(30.0, gt=0)  # seconds without a heartbeat before a running job counts as dead
    reconcile_interval: float = Field(10.0, gt=0)  # seconds between the worker's checks for stale jobs
    # a job whose worker died on this many starts in a row, none completing a step, fails (worker_lost)
    max_attempts: int = Field(3, ge=1)
    job_time_limit: float = Field(86400.0, ge=0)  # seconds a job may run from its first start; 0: no limit
    queue: str = "prune"
    # webhooks: deliveries go to their own queue (a worker with a threads pool sends them); the
    # worker refuses loopback, link-local and private addresses unless allow_private (tests, closed networks)
    webhook_queue: str = "webhooks"
    webhook_allow_private: bool = False
    webhook_max_attempts: int = Field(8, ge=1, le=50)  # per delivery (and per redelivery)
    webhook_retry_base: float = Field(5.0, gt=0)  # seconds before the first retry, doubling each time
    webhook_timeout: float = Field(10.0, gt=0)  # seconds an attempt waits for the receiver's answer
    events_heartbeat: float = 15.0  # seconds between keep-alive comments on a job's event stream
    events_poll_interval: float = 0.5  # seconds between an event stream's looks at the database
    device: str = "cpu"  # where the worker runs the engine (cuda on GPU workers)
    torch_threads: int = 0  # CPU threads for torch in the worker; 0 keeps torch's default
    # requests one API process handles at once; more wait their turn (the thread pool and the
    # database pool are sized from it, so an admitted request never waits for either)
    api_concurrency: int = Field(default=32, ge=1)
    # the operator's token for /metrics (every tenant's job counts); unset: /metrics answers 401,
    # unless auth is off
    metrics_token: str = ""
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"  # json: one object per line, for log collectors

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'gisp.db'}"

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def model_root_paths(self) -> list[Path]:
        return _paths(self.model_roots)

    @property
    def dataset_mirror_paths(self) -> list[Path]:
        return _paths(self.dataset_mirrors)


def _paths(value: str) -> list[Path]:
    return [Path(p).expanduser() for p in value.replace(",", ":").split(":") if p.strip()]


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (the worker and CLI); the API keeps its own on `app.state`."""
    return Settings()
