"""Webhooks end to end: registration (URL checks, SSRF refusal, a secret shown once), and deliveries
by the real webhook worker of a real `gisp serve` to real local HTTP receivers: one that verifies
each Standard Webhooks signature, one that fails twice and then succeeds, one that never answers in
time; every attempt listed through the API; redelivery."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks import Webhook

from tests.conftest import shared_path
from tests.live import LiveServer, live_server
from tests.service.conftest import TINY

pytestmark = [pytest.mark.service, pytest.mark.timeout(600)]
RETRY_BASE, TIMEOUT, MAX_ATTEMPTS = 0.3, 1.0, 3


class Receiver:
    """A local HTTP endpoint; `answers` is the status of each request in turn (then the last one);
    `delay` seconds pass before it answers (past the service's timeout: it never answers in time)."""

    def __init__(self, answers: list[int], delay: float = 0.0) -> None:
        self.answers, self.delay, self.requests = list(answers), delay, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append((dict(self.headers.items()), body, time.monotonic()))
                time.sleep(receiver.delay)
                status = receiver.answers.pop(0) if len(receiver.answers) > 1 else receiver.answers[0]
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verified(self, secret: str) -> list[dict]:
        """The payloads whose signature verifies with `secret` (Webhook.verify raises otherwise)."""
        return [
            Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
            for headers, body, _ in self.requests
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------- registration
def test_registration_checks_the_url_and_shows_the_secret_once(service) -> None:
    headers = service.headers()
    for url, message in [
        ("http://127.0.0.1:9/hook", "private"),
        ("http://localhost/hook", "private"),
        ("http://169.254.169.254/latest", "private"),
        ("http://[::1]/hook", "private"),
        ("http://10.1.2.3/hook", "private"),
        ("ftp://hooks.invalid/x", "http"),
        ("https://user:pw@hooks.invalid/x", "credentials"),
        ("https:///nohost", "no host"),
    ]:
        refused = service.client.post("/v1/webhooks", json={"url": url, "events": ["job.succeeded"]}, headers=headers)
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["errors"][0]["field"] == "url" and message in refused.json()["detail"], url
    bad_event = service.client.post(
        "/v1/webhooks", json={"url": "https://hooks.invalid/x", "events": ["job.exploded"]}, headers=headers
    )
    assert bad_event.status_code == 422 and "events" in bad_event.json()["errors"][0]["field"]

    created = service.client.post(
        "/v1/webhooks", json={"url": "https://hooks.invalid/x", "events": ["job.failed", "job.failed"]}, headers=headers
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["events"] == ["job.failed"] and body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) == 32
    shown = service.client.get(f"/v1/webhooks/{body['id']}", headers=headers).json()
    assert "secret" not in shown and shown["url"] == "https://hooks.invalid/x"
    assert body["id"] in [w["id"] for w in service.client.get("/v1/webhooks", headers=headers).json()["data"]]
    assert service.client.get(f"/v1/webhooks/{body['id']}", headers=service.headers("bob")).status_code == 404
    assert service.client.delete(f"/v1/webhooks/{body['id']}", headers=service.headers("bob")).status_code == 404
    assert service.client.delete(f"/v1/webhooks/{body['id']}", headers=headers).status_code == 204
    assert service.client.get(f"/v1/webhooks/{body['id']}", headers=headers).status_code == 404


def test_the_worker_refuses_a_private_address_at_delivery_time(service) -> None:
    """An endpoint whose name resolved publicly at registration may point inward later (DNS
    rebinding); written here straight to the database, the delivery check refuses it."""
    from gisp_service.api.webhooks import delivery, events
    from gisp_service.db.models import WebhookEndpoint
    from gisp_service.db.repos import tenants, webhooks
    from gisp_service.db.session import transaction

    receiver = Receiver([204])
    try:
        with transaction(service.rt.sessions) as session:
            tenant = tenants.get_or_create(session, "inward")
            webhooks.add(
                session,
                WebhookEndpoint(
                    id="whep_inward",
                    tenant_id=tenant.id,
                    url=receiver.url,
                    events=["job.succeeded"],
                    secret="whsec_" + "A" * 44,
                ),
            )
            (delivery_id,) = events.emit(session, service.settings, tenant.id, "job.succeeded", {"id": "job_x"})
        assert delivery.deliver_once(service.rt, delivery_id) is None
        with service.rt.sessions() as session:
            row = webhooks.delivery_any(session, delivery_id)
            (attempt,) = webhooks.attempts_of(session, [delivery_id])[delivery_id]
        assert row.status == "failed" and attempt.status_code is None and "refused" in attempt.error
        assert receiver.requests == []
    finally:
        receiver.close()


# ------------------------------------------------------------------------------- delivery
@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    models = shared_path("models", "stories260K").parent
    env = {
        "GISP_WEBHOOK_ALLOW_PRIVATE": "1",  # the receivers are on loopback
        "GISP_WEBHOOK_RETRY_BASE": str(RETRY_BASE),
        "GISP_WEBHOOK_TIMEOUT": str(TIMEOUT),
        "GISP_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "GISP_TORCH_THREADS": "1",
    }
    with live_server(tmp_path_factory.mktemp("gisp-webhooks"), models, env=env) as live:
        yield live


def register(server: LiveServer, url: str, events: list[str]) -> dict:
    response = httpx.post(f"{server.url}/v1/webhooks", json={"url": url, "events": events}, headers=server.headers)
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(server: LiveServer, webhook: dict) -> list[dict]:
    response = httpx.get(f"{server.url}/v1/webhooks/{webhook['id']}/deliveries", headers=server.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def settled(server: LiveServer, webhook: dict, count: int, timeout: float = 120) -> list[dict]:
    """The endpoint's deliveries once `count` of them exist and none is still pending or retrying."""
    deadline = time.monotonic() + timeout
    while True:
        rows = deliveries(server, webhook)
        if len(rows) >= count and all(r["status"] in ("succeeded", "failed") for r in rows):
            return rows
        assert time.monotonic() < deadline, f"deliveries did not settle: {rows}\n{server.log()[-3000:]}"
        time.sleep(0.2)


def run_job(server: LiveServer, dataset_id: str, **change) -> dict:
    body = {**TINY, "dataset_id": dataset_id, **change}
    job = httpx.post(f"{server.url}/v1/jobs", json=body, headers=server.headers).json()
    deadline = time.monotonic() + 180
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = httpx.get(f"{server.url}/v1/jobs/{job['id']}", headers=server.headers).json()
    return job


def test_signed_deliveries_with_retries_timeouts_and_redelivery(server) -> None:
    text = shared_path("data", "tinystories", "tinystories_val.txt").read_bytes()[:200_000]
    dataset = httpx.post(f"{server.url}/v1/datasets", files={"file": ("s.txt", text)}, headers=server.headers).json()
    good, flaky, silent = Receiver([204]), Receiver([500, 503, 200]), Receiver([204], delay=TIMEOUT + 1.5)
    try:
        everything = register(server, good.url, ["job.succeeded", "job.failed", "job.cancelled", "checkpoint.created"])
        hook_flaky = register(server, flaky.url, ["job.succeeded"])
        hook_silent = register(server, silent.url, ["job.succeeded"])

        job = run_job(server, dataset["id"])
        assert job["status"] == "succeeded"
        failed = run_job(server, dataset["id"], model="no-such-org/no-such-model")
        assert failed["status"] == "failed"

        rows = settled(server, everything, 4)
        assert all(r["status"] == "succeeded" and len(r["attempts"]) == 1 for r in rows)
        payloads = good.verified(everything["secret"])
        assert sorted(p["type"] for p in payloads) == [
            "checkpoint.created",
            "checkpoint.created",
            "job.failed",
            "job.succeeded",
        ]
        succeeded = next(p for p in payloads if p["type"] == "job.succeeded")
        assert succeeded["data"]["id"] == job["id"] and succeeded["data"]["checkpoint_count"] == 2
        assert {p["data"]["job_id"] for p in payloads if p["type"] == "checkpoint.created"} == {job["id"]}
        with pytest.raises(Exception):  # noqa: B017  (the library's WebhookVerificationError)
            good.verified(hook_flaky["secret"])  # another endpoint's secret does not verify these

        (retried,) = settled(server, hook_flaky, 1)
        assert retried["status"] == "succeeded" and [a["status_code"] for a in retried["attempts"]] == [500, 503, 200]
        assert len(flaky.verified(hook_flaky["secret"])) == 3
        assert len({headers["webhook-id"] for headers, _, _ in flaky.requests}) == 1  # one message, three attempts
        arrivals = [at for _, _, at in flaky.requests]
        for n, (before, after) in enumerate(zip(arrivals, arrivals[1:], strict=False)):
            assert after - before >= RETRY_BASE * 2**n * 0.9  # exponential backoff between attempts

        (timed_out,) = settled(server, hook_silent, 1)
        assert timed_out["status"] == "failed" and len(timed_out["attempts"]) == MAX_ATTEMPTS
        assert all(a["status_code"] is None and a["latency_seconds"] >= TIMEOUT * 0.9 for a in timed_out["attempts"])
        assert "Timeout" in timed_out["attempts"][0]["error"]

        silent.delay = 0.0  # the receiver is back: a redelivery goes through
        url = f"{server.url}/v1/webhooks/{hook_silent['id']}/deliveries/{timed_out['id']}/redeliver"
        again = httpx.post(url, headers=server.headers)
        assert again.status_code == 202 and again.json()["status"] == "pending"
        deadline = time.monotonic() + 60
        while (row := deliveries(server, hook_silent)[0])["status"] != "succeeded":
            assert time.monotonic() < deadline, row
            time.sleep(0.2)
        assert len(row["attempts"]) == MAX_ATTEMPTS + 1 and row["attempts"][-1]["status_code"] == 204
        missing = httpx.post(
            f"{server.url}/v1/webhooks/{hook_silent['id']}/deliveries/msg_nope/redeliver", headers=server.headers
        )
        assert missing.status_code == 404
    finally:
        for receiver in (good, flaky, silent):
            receiver.close()


def test_a_cancelled_job_is_announced(server) -> None:
    text = shared_path("data", "tinystories", "tinystories_val.txt").read_bytes()[:200_000]
    dataset = httpx.post(f"{server.url}/v1/datasets", files={"file": ("s.txt", text)}, headers=server.headers).json()
    receiver = Receiver([204])
    try:
        hook = register(server, receiver.url, ["job.cancelled"])
        body = {**TINY, "dataset_id": dataset["id"], "steps": 40, "seq_len": 128}
        job = httpx.post(f"{server.url}/v1/jobs", json=body, headers=server.headers).json()
        assert httpx.post(f"{server.url}/v1/jobs/{job['id']}/cancel", headers=server.headers).status_code == 200
        (row,) = settled(server, hook, 1)
        assert row["status"] == "succeeded"
        (payload,) = receiver.verified(hook["secret"])
        assert payload["type"] == "job.cancelled" and payload["data"]["id"] == job["id"]
        assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None
        assert json.loads(receiver.requests[0][1])["data"]["status"] == "cancelled"
    finally:
        receiver.close()
