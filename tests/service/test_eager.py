"""GISP_EAGER_MATERIALIZE: the worker function builds every checkpoint's tar when the job succeeds.
Runs `worker.runner.run_job` in this process (no Celery) on its own data directory."""

from __future__ import annotations

import hashlib

import pytest

from tests.service.conftest import MODEL_ROOT, TEXT, TINY

pytestmark = pytest.mark.service


def test_eager_materialization(assets, tmp_path):
    from fastapi.testclient import TestClient

    from gisp_service.api.app import create_app
    from gisp_service.core.runtime import Runtime
    from gisp_service.core.settings import Settings
    from gisp_service.db.migrate import upgrade
    from gisp_service.worker.runner import run_job

    settings = Settings(data_dir=tmp_path, model_roots=str(MODEL_ROOT), auth="off", eager_materialize=True)
    upgrade(settings.db_url)  # the app never migrates (a deploy does, once)
    with TestClient(create_app(settings)) as client:
        with TEXT.open("rb") as handle:
            dataset = client.post("/v1/datasets", files={"file": ("t.txt", handle)}).json()
        job = client.post("/v1/jobs", json={**TINY, "dataset_id": dataset["id"]}).json()
        assert run_job(job["id"], "in-process", Runtime.build(settings)) == "succeeded"
        assert run_job(job["id"], "in-process", Runtime.build(settings)) == "skipped"  # a duplicate delivery
        checkpoints = client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]
        assert len(checkpoints) == 2 and all(c["sha256"] for c in checkpoints)
        for checkpoint in checkpoints:
            tar = tmp_path / "artifacts" / "checkpoints" / f"{checkpoint['id']}.tar"
            assert hashlib.sha256(tar.read_bytes()).hexdigest() == checkpoint["sha256"]
            assert not (tmp_path / "artifacts" / "checkpoints" / checkpoint["id"]).exists()  # only the tar
        download = client.get(f"/v1/checkpoints/{checkpoints[0]['id']}/download")
        assert download.headers["etag"] == f'"{checkpoints[0]["sha256"]}"'
