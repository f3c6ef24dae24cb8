"""Crash hygiene of uploads: a partial staging file (what an API process killed mid-upload leaves)
is deleted once it is older than GISP_STAGING_MAX_AGE, at the API's start and periodically, and
counted on /metrics; a fresh one (an upload in progress) is left alone."""

from __future__ import annotations

import os
import time

import pytest

pytestmark = pytest.mark.service


def _metric(app, name: str) -> float:
    from prometheus_client import generate_latest

    for line in generate_latest(app.state.http_metrics).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def _wait(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_stale_staging_files_are_reclaimed_at_start_and_periodically(service, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from gisp_service.api.app import create_app
    from gisp_service.core.artifacts import ArtifactStore

    # its own data folder (the session's database and broker): the session app's own sweeper
    # must not take these files first
    base = service.settings
    settings = base.model_copy(
        update={"staging_max_age": 20.0, "data_dir": tmp_path, "database_url": base.db_url, "broker_url": base.broker}
    )
    staging = ArtifactStore(settings.artifacts_dir).staging_dir()
    staging.mkdir(parents=True, exist_ok=True)
    stale, fresh = staging / "tmpkilled1.txt", staging / "tmpinprogress.txt"
    stale.write_bytes(b"x" * 1000)  # as a SIGKILLed upload leaves its spool file
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh.write_bytes(b"y" * 10)  # (sweeps every 5 s; it would go stale after 20 s)
    young = time.time() + 3600  # touched "in the future": young however slowly a loaded machine starts the app
    os.utime(fresh, (young, young))
    app = create_app(settings)
    with TestClient(app):
        _wait(lambda: _metric(app, "gisp_staging_files_reclaimed_total") >= 1)
        assert not stale.exists()
        assert fresh.exists()  # younger than the max age: an upload may still be writing it
        assert _metric(app, "gisp_staging_files_reclaimed_total") == 1
        assert _metric(app, "gisp_staging_bytes_reclaimed_total") == 1000
        os.utime(fresh, (old, old))  # it goes stale while the API runs: the next periodic sweep takes it
        _wait(lambda: _metric(app, "gisp_staging_files_reclaimed_total") >= 2)
        assert not fresh.exists()
        assert _metric(app, "gisp_staging_files_reclaimed_total") == 2
