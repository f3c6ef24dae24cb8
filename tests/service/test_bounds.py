"""Resource bounds at submit time (issue 13): sizes a client chooses are bounded in the schema
and refused with a named 4xx before anything is queued; lists are paged."""

from __future__ import annotations

import json

import pytest

from gisp.config import MAX_SEED, MAX_STEPS, MAX_TARGETS
from tests.service.conftest import TINY, submit
from tests.service.test_validation import fields, problem

pytestmark = pytest.mark.service


def test_bounds_are_in_the_openapi_schema(service):
    schema = service.client.get("/openapi.json").json()["components"]["schemas"]["JobCreate"]["properties"]
    assert schema["seed"]["maximum"] == MAX_SEED and schema["seed"]["minimum"] == 0
    assert schema["steps"]["maximum"] == MAX_STEPS
    assert schema["targets"]["maxItems"] == MAX_TARGETS
    assert "maximum" in schema["samples"] and "maximum" in schema["seq_len"]


def test_seed_out_of_range_is_a_named_422_not_a_500(service, text_dataset):
    body = problem(submit(service, {**TINY, "dataset_id": text_dataset["id"], "seed": 2**64}), 422)
    assert fields(body) == {"seed"}


def test_a_target_that_rounds_onto_one_is_reported_as_sent(service, text_dataset):
    body = problem(submit(service, {**TINY, "dataset_id": text_dataset["id"], "targets": [0.2, 0.9999999]}), 422)
    assert "targets" in fields(body) and "0.9999999" in body["detail"], body


def test_a_dataset_too_short_for_one_window_is_refused_at_submit_with_the_numbers(service):
    upload = service.client.post("/v1/datasets", files={"file": ("one.txt", b"a")}, headers=service.headers())
    assert upload.status_code == 201, upload.text
    body = problem(submit(service, {**TINY, "dataset_id": upload.json()["id"]}), 422)
    assert "dataset_id" in fields(body)
    assert "one.txt" in body["detail"] and "1 bytes" in body["detail"] and "seq_len=64" in body["detail"], body


def test_json_body_over_the_limit_is_413_declared_or_chunked(service):
    limit = service.settings.max_body_bytes
    big = json.dumps({**TINY, "model": "x" * (limit + 10)}).encode()
    declared = service.client.post(
        "/v1/jobs", content=big, headers={**service.headers(), "Content-Type": "application/json"}
    )
    assert "body" in fields(problem(declared, 413))

    def chunks():  # no Content-Length: the body arrives chunked and is cut off at the limit
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    chunked = service.client.post(
        "/v1/jobs", content=chunks(), headers={**service.headers(), "Content-Type": "application/json"}
    )
    assert "body" in fields(problem(chunked, 413))


def test_checkpoints_are_paged(service, finished_job):
    path = f"/v1/jobs/{finished_job['id']}/checkpoints"
    first = service.client.get(path, params={"limit": 1}, headers=service.headers()).json()
    assert len(first["data"]) == 1 and first["has_more"] is True
    second = service.client.get(path, params={"limit": 1, "after": first["data"][0]["id"]}, headers=service.headers())
    page = second.json()
    assert len(page["data"]) == 1 and page["has_more"] is False
    assert page["data"][0]["target_sparsity"] > first["data"][0]["target_sparsity"]
    assert "limit" in fields(problem(service.client.get(path, params={"limit": 1000}, headers=service.headers()), 422))
