"""Live job events over Server-Sent Events against a real `gisp serve`: events arrive while the
job runs, with heartbeats, the stream closes when the job ends, Last-Event-ID resumes after the
last seen event, and `gisp submit --wait` follows the stream (falling back to polling when the
answer is not an event stream)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from gisp_service.client import sse
from gisp_service.client.http import GispClient
from tests.conftest import shared_path
from tests.live import GISP, LiveServer, live_server

pytestmark = [pytest.mark.service, pytest.mark.timeout(600)]
JOB = {"model": "stories260K", "targets": [0.2, 0.4], "steps": 6, "samples": 8, "seq_len": 64}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    models = shared_path("models", "stories260K").parent
    env = {"GISP_EVENTS_HEARTBEAT": "0.3", "GISP_TORCH_THREADS": "1"}
    with live_server(tmp_path_factory.mktemp("gisp-sse"), models, env=env) as live:
        yield live


@pytest.fixture(scope="module")
def dataset(server: LiveServer) -> dict:
    text = shared_path("data", "tinystories", "tinystories_val.txt").read_bytes()[:200_000]
    response = httpx.post(f"{server.url}/v1/datasets", files={"file": ("s.txt", text)}, headers=server.headers)
    assert response.status_code == 201, response.text
    return response.json()


def stream(server: LiveServer, job_id: str, **headers: str) -> tuple[list[sse.Message], float]:
    """Every message of the job's stream until the server closes it, and the seconds that took."""
    started = time.monotonic()
    headers = {**server.headers, "Accept": "text/event-stream", **headers}
    with httpx.stream("GET", f"{server.url}/v1/jobs/{job_id}/events", headers=headers, timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        return list(sse.messages(response.iter_lines())), time.monotonic() - started


def test_the_stream_delivers_every_event_and_closes_when_the_job_ends(server, dataset) -> None:
    job = httpx.post(f"{server.url}/v1/jobs", json={**JOB, "dataset_id": dataset["id"]}, headers=server.headers)
    messages, _ = stream(server, job.json()["id"])
    events = [json.loads(m.data) for m in messages if m.data]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [m.id for m in messages if m.data] == [str(e["seq"]) for e in events]
    types = [e["type"] for e in events]
    assert types[0] == "queued" and types[-1] == "finished" and types.count("step") == 6
    assert types.count("checkpoint") == 2
    assert any(not m.data for m in messages), "no heartbeat comment arrived while the job ran"
    # the JSON page still answers a plain request, the same events
    page = httpx.get(f"{server.url}/v1/jobs/{job.json()['id']}/events", headers=server.headers).json()
    assert [e["seq"] for e in page["data"]] == [e["seq"] for e in events]

    resumed, seconds = stream(server, job.json()["id"], **{"Last-Event-ID": str(events[-3]["seq"])})
    assert [json.loads(m.data)["seq"] for m in resumed if m.data] == [e["seq"] for e in events[-2:]]
    assert seconds < 10  # a finished job's stream ends at once after its last event


def test_stream_errors_are_problems(server) -> None:
    headers = {**server.headers, "Accept": "text/event-stream"}
    missing = httpx.get(f"{server.url}/v1/jobs/job_missing/events", headers=headers)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert (
        httpx.get(f"{server.url}/v1/jobs/job_missing/events", headers={"Accept": "text/event-stream"}).status_code
        == 401
    )


def test_client_wait_follows_the_stream_and_cli_submit_wait(server, dataset, tmp_path) -> None:
    seen: list[int] = []
    with GispClient(server.url, server.key) as client:
        job = client.create_job(
            model="stories260K", dataset_id=dataset["id"], **{k: v for k, v in JOB.items() if k != "model"}
        )
        final = client.wait(job["id"], on_update=lambda j: seen.append(j["progress"]["step"]))
    assert final["status"] == "succeeded" and 6 in seen and len(set(seen)) >= 3
    text = tmp_path / "s.txt"
    text.write_bytes(shared_path("data", "tinystories", "tinystories_val.txt").read_bytes()[:100_000])
    env = {"GISP_URL": server.url, "GISP_API_KEY": server.key, "PATH": "/usr/bin:/bin"}
    command = [*GISP, "submit", "stories260K", "--data", str(text), "--targets", "0.3", "--steps", "3"]
    done = subprocess.run(
        [*command, "--samples", "4", "--seq-len", "64", "--wait"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "succeeded with 1 checkpoints" in done.stderr


def test_wait_polls_when_a_proxy_strips_the_stream(server, dataset) -> None:
    """A proxy that answers the stream request with a JSON page cannot be had here without
    writing one; this transport stands in for it (the only fake: every other request is real)."""
    real = httpx.HTTPTransport()
    stripped = []

    def handler(request: httpx.Request) -> httpx.Response:
        if "text/event-stream" in request.headers.get("accept", ""):
            stripped.append(request.url.path)
            request.headers["Accept"] = "application/json"
        response = real.handle_request(request)
        response.read()
        return httpx.Response(response.status_code, headers=response.headers, content=response.content)

    with GispClient(server.url, server.key, transport=httpx.MockTransport(handler)) as client:
        job = client.create_job(
            model="stories260K", dataset_id=dataset["id"], **{k: v for k, v in JOB.items() if k != "model"}
        )
        final = client.wait(job["id"], poll=0.2)
    assert final["status"] == "succeeded" and stripped == [f"/v1/jobs/{job['id']}/events"]
