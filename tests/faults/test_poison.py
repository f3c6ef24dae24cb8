"""A poison job: one that kills its worker at every start (fault injection: GISP_FAULT_EXIT_AT
makes the process running the job with seed POISON exit at once at step 1, as the kernel's OOM
killer or a crashing GPU kernel would). After GISP_MAX_ATTEMPTS starts it is failed with
`worker_lost` and the count, and the job queued behind it succeeds; in the embedded shape (`gisp
serve`, which restarts its dead worker) and the production one (PostgreSQL, Redis, the API and
docker/entrypoint-worker.sh's prefork worker, whose parent replaces a dead child)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.conftest import FAULT_ENV, KILLABLE, POISON, TERMINAL
from tests.live import live_server
from tests.service.conftest import MODEL_ROOT, TEXT

pytestmark = [pytest.mark.service, pytest.mark.timeout(600)]
TINY_JOB = {**KILLABLE, "steps": 2}


def _check(poison: dict, poison_events: list[dict], good: dict, cap: int) -> None:
    assert poison["status"] == "failed", poison
    assert poison["error"]["code"] == "worker_lost"
    assert f"lost {cap} times in a row during step 1" in poison["error"]["message"]
    assert [e["data"]["attempt"] for e in poison_events if e["type"] == "started"] == list(range(1, cap + 1))
    assert poison_events[-1]["type"] == "error" and poison_events[-1]["data"]["attempts"] == cap
    assert good["status"] == "succeeded" and good["checkpoint_count"] == 2, good


def test_embedded_poison_job_fails_after_the_attempt_cap_and_the_next_job_runs(assets, tmp_path) -> None:
    with live_server(tmp_path, MODEL_ROOT, env={**FAULT_ENV, "GISP_MAX_ATTEMPTS": "2"}) as live:
        upload = httpx.post(
            f"{live.url}/v1/datasets", files={"file": ("s.txt", TEXT.read_bytes()[:200_000])}, headers=live.headers
        ).json()
        ids = []
        for seed in (POISON, 1):
            body = {**TINY_JOB, "seed": seed, "dataset_id": upload["id"]}
            ids.append(httpx.post(f"{live.url}/v1/jobs", json=body, headers=live.headers).json()["id"])
        jobs = {}
        deadline = time.monotonic() + 300
        while len(jobs) < 2:
            assert time.monotonic() < deadline, live.log()[-4000:]
            for job_id in ids:
                job = httpx.get(f"{live.url}/v1/jobs/{job_id}", headers=live.headers).json()
                if job["status"] in TERMINAL:
                    jobs[job_id] = job
            time.sleep(0.2)
        events = httpx.get(f"{live.url}/v1/jobs/{ids[0]}/events?limit=1000", headers=live.headers).json()["data"]
        _check(jobs[ids[0]], events, jobs[ids[1]], cap=2)  # (2 here, to save a worker start; 3 below)
        assert live.log().count("restarting it") >= 2  # the supervisor brought the dead worker back each time


def test_production_poison_job_fails_after_the_attempt_cap_and_the_next_job_runs(production) -> None:
    s = production.stack
    poison = s.submit({**TINY_JOB, "seed": POISON})
    good = s.finished(s.submit({**TINY_JOB, "seed": 1})["id"], timeout=300)
    poison = s.finished(poison["id"], timeout=300)
    _check(poison, s.events(poison["id"]), good, cap=3)
    assert s.worker.process.poll() is None  # the parent lived on; only its children died
