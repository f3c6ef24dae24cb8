"""Which models a job may name (issue 13): the operator's allow-list, and a hub id checked at
submit against the hub. There is no hub on the test machine, so the hub is a small local HTTP
server that answers the same HEAD the real one does (a fake for a network the tests cannot
reach); an unreachable hub is a closed port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from gisp_service.core.model_policy import ModelPolicy, ModelRefused
from tests.live import free_port
from tests.service.conftest import MODEL, MODEL_ROOT, TINY
from tests.service.test_validation import fields, problem

pytestmark = pytest.mark.service
ON_THE_HUB = {"acme/tiny-llama"}


class FakeHub(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        FakeHub.seen.append(self.path)
        model = self.path.removeprefix("/").removesuffix("/resolve/main/config.json")
        self.send_response(200 if model in ON_THE_HUB else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def policy(allowed: str, hub_url: str = "") -> ModelPolicy:
    return ModelPolicy([p for p in allowed.split(",") if p], [MODEL_ROOT], hub_url, timeout=2.0)


def test_the_default_allows_local_models_only():
    default = policy("local")
    default.check(MODEL)
    with pytest.raises(ModelRefused, match="not allowed here"):
        default.check("acme/tiny-llama")
    listed = policy("acme/*")
    listed.check("acme/tiny-llama")
    with pytest.raises(ModelRefused, match="local model"):
        listed.check(MODEL)


def test_a_hub_id_is_checked_once_against_the_hub(hub):
    checked = policy("*", hub)
    FakeHub.seen.clear()
    checked.check("acme/tiny-llama")
    with pytest.raises(ModelRefused, match="does not exist"):
        checked.check("evil/does-not-exist-xyz")
    with pytest.raises(ModelRefused, match="does not exist"):
        checked.check("evil/does-not-exist-xyz")
    checked.check("acme/tiny-llama")
    assert FakeHub.seen == [
        "/acme/tiny-llama/resolve/main/config.json",
        "/evil/does-not-exist-xyz/resolve/main/config.json",
    ]


def test_an_unreachable_hub_does_not_block_a_submission():
    checked = policy("*", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert checked.exists_on_hub("acme/tiny-llama") is None
    checked.check("acme/tiny-llama")  # accepted: the worker finds out, within its own timeout


def test_submit_names_the_model_the_policy_refuses(service, text_dataset, hub):
    from gisp_service.api.app import create_app

    settings = service.settings.model_copy(update={"allowed_models": "local,acme/*", "hub_url": hub})
    with TestClient(create_app(settings)) as client:
        for model, message in (("other/model", "not allowed here"), ("acme/missing", "does not exist")):
            response = client.post(
                "/v1/jobs", json={**TINY, "dataset_id": text_dataset["id"], "model": model}, headers=service.headers()
            )
            body = problem(response, 422)
            assert fields(body) == {"model"} and message in body["detail"], body


@pytest.mark.parametrize("hub_url, offline", [("http://127.0.0.1:9", False), ("", True)])
def test_the_worker_reaches_the_hub_with_the_services_endpoint_and_timeout(hub_url, offline):
    """What huggingface_hub reads in a worker process once `worker_hub_environment` ran."""
    import os
    import subprocess
    import sys

    code = (
        "from gisp_service.core.model_policy import worker_hub_environment\n"
        "from gisp_service.core.settings import Settings\n"
        "worker_hub_environment(Settings())\n"
        "from huggingface_hub import constants as c\n"
        "print(c.ENDPOINT, c.HF_HUB_ETAG_TIMEOUT, c.HF_HUB_OFFLINE)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GISP_", "HF_"))}
    env.update(GISP_HUB_URL=hub_url, GISP_HUB_TIMEOUT="2.5")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    endpoint, timeout, is_offline = out.stdout.split()
    assert is_offline == str(offline)
    if not offline:
        assert endpoint == hub_url and timeout == "3"
