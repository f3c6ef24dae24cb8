"""The OpenAPI document is the contract: the committed openapi.json is what the app serves, and
schemathesis, driven by that committed schema against a live `gisp serve`, finds no server error,
no undocumented status code and no undocumented content type."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gisp_service.api.app import create_app
from gisp_service.api.openapi import SNAPSHOT, render
from tests.conftest import shared_path
from tests.live import LiveServer, live_server

pytestmark = [pytest.mark.service, pytest.mark.timeout(600)]
EXAMPLES_PER_OPERATION = 25  # a fixed budget that fits CI (about a minute)


def test_the_committed_schema_is_what_the_app_serves(tmp_path) -> None:
    from gisp_service.core.settings import Settings

    served = render(create_app(Settings(data_dir=tmp_path)))
    assert served == SNAPSHOT.read_text(), "openapi.json is stale: run `python scripts/openapi.py` and commit it"


def test_the_contract_names_security_errors_and_operation_ids() -> None:
    import json

    document = json.loads(SNAPSHOT.read_text())
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert all("-" in op["operationId"] and "_" not in op["operationId"].split("-")[0] for op in operations)
    assert {"jobs-submit", "checkpoints-download", "datasets-upload"} <= {op["operationId"] for op in operations}
    for op in operations:
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                assert list(response["content"]) == ["application/problem+json"], (op["operationId"], code)
    download = document["paths"]["/v1/checkpoints/{checkpoint_id}/download"]["get"]["responses"]
    assert {"200", "206", "304", "404", "416"} <= set(download)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """A live API (no worker: generated jobs stay queued) with one uploaded dataset."""
    import httpx

    models = shared_path("models", "stories260K").parent
    with live_server(tmp_path_factory.mktemp("gisp-contract"), models, "--no-worker") as live:
        text = shared_path("data", "tinystories", "tinystories_val.txt").read_bytes()[:20_000]
        uploaded = httpx.post(f"{live.url}/v1/datasets", files={"file": ("s.txt", text)}, headers=live.headers)
        assert uploaded.status_code == 201, uploaded.text
        yield live


def test_schemathesis_finds_no_undocumented_behaviour(server: LiveServer) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import checks

    # what the contract promises; data that fits the schema may still be refused on its content
    # (an unknown dataset id, a text file with no window), so positive-data acceptance is not one
    contract_checks = [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
        checks.response_headers_conformance,
    ]

    schema = schemathesis.openapi.from_path(SNAPSHOT)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:
            case.call_and_validate(base_url=server.url, headers=server.headers, checks=contract_checks)

        try:
            check()
        except Exception as exc:  # noqa: BLE001  (collect every operation's failure, then report them all)
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)[-6000:]
