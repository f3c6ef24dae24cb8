"""SIGKILL of the whole embedded service (`gisp serve`'s process group: uvicorn, its worker and
its webhook worker) at a random step, three times, restarting it on the same data directory each
time: the job resumes from its trajectory and succeeds with checkpoint archives byte-identical to
an undisturbed run's, with its events contiguous and none of its steps missing. (The worker alone,
killed three times on both back-ends with the API running on: tests/service/test_resume.py.)"""

from __future__ import annotations

import os
import random
import signal
import time

import httpx
import pytest

from tests.faults.conftest import KILLABLE, TERMINAL
from tests.live import LiveServer, live_server
from tests.service.conftest import MODEL_ROOT, TEXT

pytestmark = [pytest.mark.service, pytest.mark.timeout(600)]
ENV = {"GISP_HEARTBEAT_TIMEOUT": "3", "GISP_RECONCILE_INTERVAL": "1", "GISP_TORCH_THREADS": "1"}
BODY = {**KILLABLE, "steps": 16, "seed": 5}
KILLS = 3


def _job(live: LiveServer, job_id: str) -> dict:
    return httpx.get(f"{live.url}/v1/jobs/{job_id}", headers=live.headers).json()


def _wait(live: LiveServer, job_id: str, predicate, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while not predicate(job := _job(live, job_id)):
        assert time.monotonic() < deadline, f"{job}\n{live.log()[-3000:]}"
        time.sleep(0.05)
    return job


def _starts(live: LiveServer, job_id: str) -> int:
    events = httpx.get(f"{live.url}/v1/jobs/{job_id}/events?limit=100", headers=live.headers).json()["data"]
    return sum(1 for e in events if e["type"] == "started")


def _tars(live: LiveServer, job_id: str) -> list[bytes]:
    listing = httpx.get(f"{live.url}/v1/jobs/{job_id}/checkpoints", headers=live.headers).json()["data"]
    out = []
    for checkpoint in sorted(listing, key=lambda c: c["target_sparsity"]):
        response = httpx.get(f"{live.url}/v1/checkpoints/{checkpoint['id']}/download", headers=live.headers)
        assert response.status_code == 200, response.text
        out.append(response.content)
    return out


def test_the_whole_service_killed_three_times_resumes_to_the_same_checkpoints(assets, tmp_path) -> None:
    seed = random.randrange(1 << 16)
    kill_at = sorted(random.Random(seed).sample(range(1, BODY["steps"] - 5), KILLS))
    print(f"killing gisp serve once step {kill_at} is done (seed {seed})")
    job_id = dataset_id = ""
    reached = 0
    for n, step in enumerate(kill_at, 1):
        with live_server(tmp_path, MODEL_ROOT, env=ENV) as live:
            if not job_id:
                files = {"file": ("s.txt", TEXT.read_bytes()[:200_000])}
                dataset_id = httpx.post(f"{live.url}/v1/datasets", files=files, headers=live.headers).json()["id"]
                body = {**BODY, "dataset_id": dataset_id}
                job_id = httpx.post(f"{live.url}/v1/jobs", json=body, headers=live.headers).json()["id"]
            # once this server's worker has started the job (the n-th start) and made progress since
            # the last kill: the row the killed worker left would satisfy the wait at once
            target = max(step, reached + 1)
            _wait(live, job_id, lambda j, t=target: j["status"] == "running" and j["progress"]["step"] >= t)
            _wait(live, job_id, lambda j, n=n: _starts(live, j["id"]) >= n)
            reached = _job(live, job_id)["progress"]["step"]
            os.killpg(live.process.pid, signal.SIGKILL)  # no shutdown of any kind: as a power cut
            live.process.wait()
    with live_server(tmp_path, MODEL_ROOT, env=ENV) as live:
        final = _wait(live, job_id, lambda j: j["status"] in TERMINAL, timeout=240)
        assert final["status"] == "succeeded", final
        events = httpx.get(f"{live.url}/v1/jobs/{job_id}/events?limit=1000", headers=live.headers).json()["data"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert sum(1 for e in events if e["type"] == "started") == KILLS + 1
        assert sorted({e["data"]["step"] for e in events if e["type"] == "step"}) == list(range(1, BODY["steps"] + 1))
        body = {**BODY, "dataset_id": dataset_id}
        undisturbed = httpx.post(f"{live.url}/v1/jobs", json=body, headers=live.headers).json()
        assert _wait(live, undisturbed["id"], lambda j: j["status"] in TERMINAL)["status"] == "succeeded"
        assert _tars(live, job_id) == _tars(live, undisturbed["id"])
