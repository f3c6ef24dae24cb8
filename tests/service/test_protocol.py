"""Protocol details a careless or hostile client meets (issue 13): every error is problem+json in
the user's terms, conditional and ranged downloads follow RFC 9110, OPTIONS and 405 list every
method, /metrics takes the operator's token, and API keys can be listed, revoked and expire."""

from __future__ import annotations

import pytest

from tests.service.conftest import service_env
from tests.service.test_validation import fields, problem

pytestmark = pytest.mark.service


def test_upload_errors_name_the_users_file_and_what_to_send(service):
    empty = problem(service.client.post("/v1/datasets", files={"file": ("mine.txt", b"  \n")},
                                        headers=service.headers()), 422)  # fmt: skip
    assert "mine.txt" in empty["detail"] and "tmp" not in empty["detail"] and ".staging" not in empty["detail"]
    as_text = problem(service.client.post("/v1/datasets", data={"file": "hello"}, files={"x": ("x.txt", b"x")},
                                          headers=service.headers()), 422)  # fmt: skip
    assert fields(as_text) == {"file"} and "file part" in as_text["detail"] and "UploadFile" not in as_text["detail"]


def test_a_body_that_is_not_json_names_the_body_and_a_wrong_type_is_415(service):
    json_type = {**service.headers(), "Content-Type": "application/json"}
    broken = problem(service.client.post("/v1/jobs", content=b'{"model": ', headers=json_type), 422)
    assert fields(broken) == {"body"} and "not valid JSON" in broken["detail"]
    # bytes that are not UTF-8 fail before JSON parsing (FastAPI's 400): still a 422 naming the body
    # (found by schemathesis' stateful phase)
    undecodable = problem(service.client.post("/v1/jobs", content=b"\xa9.\xdbM\x01)", headers=json_type), 422)
    assert fields(undecodable) == {"body"} and "UTF-8" in undecodable["detail"]
    text_type = {**service.headers(), "Content-Type": "text/plain"}
    wrong = problem(service.client.post("/v1/jobs", content=b'{"model": "x"}', headers=text_type), 415)
    assert fields(wrong) == {"Content-Type"} and "application/json" in wrong["detail"]


def test_downloads_follow_rfc_9110(service, finished_job):
    checkpoint = service.client.get(f"/v1/jobs/{finished_job['id']}/checkpoints", headers=service.headers()).json()
    path = f"/v1/checkpoints/{checkpoint['data'][0]['id']}/download"
    whole = service.client.get(path, headers=service.headers())
    assert whole.status_code == 200
    etag, size = whole.headers["etag"], len(whole.content)
    for header in (f"W/{etag}", f'"nope", {etag}', "*"):
        assert service.client.get(path, headers={**service.headers(), "If-None-Match": header}).status_code == 304
    assert service.client.get(path, headers={**service.headers(), "If-None-Match": '"nope"'}).status_code == 200
    for malformed in ("bytes=abc", "items=0-10", "bytes=10-5", "bytes"):
        ignored = service.client.get(path, headers={**service.headers(), "Range": malformed})
        assert ignored.status_code == 200 and len(ignored.content) == size, malformed
    past = problem(service.client.get(path, headers={**service.headers(), "Range": f"bytes={size + 10}-"}), 416)
    assert fields(past) == {"Range"}
    assert service.client.get(path, headers={**service.headers(), "Range": "bytes=0-9"}).status_code == 206
    head = service.client.head(path, headers=service.headers())
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == etag
    assert int(head.headers["content-length"]) == size


def test_options_and_405_list_every_method_of_the_path(service):
    options = service.client.options("/v1/jobs")
    assert options.status_code == 204 and options.headers["allow"] == "GET, OPTIONS, POST"
    assert service.client.options("/v1/datasets/ds_x").headers["allow"] == "DELETE, GET, OPTIONS"
    refused = service.client.delete("/v1/jobs", headers=service.headers())
    problem(refused, 405)
    assert refused.headers["allow"] == "GET, OPTIONS, POST"


def test_metrics_take_the_operators_token(service):
    problem(service.client.get("/metrics"), 401)
    problem(service.client.get("/metrics", headers=service.headers()), 401)  # a tenant's key is not enough


def _admin(service, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`gisp admin ...` in this process, with the service's settings (a subprocess costs seconds)."""
    from gisp.cli import main
    from gisp_service.core.settings import get_settings

    for name, value in service_env(service.backend, service.settings.data_dir).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        code = main(["admin", *args])
    finally:
        get_settings.cache_clear()
    return code, capsys.readouterr().out


def test_expired_and_revoked_keys_are_refused(service):
    from datetime import UTC, datetime, timedelta

    from gisp_service.db.repos.tenants import create_key, revoke_key
    from gisp_service.db.session import write_transaction

    with write_transaction(service.rt.sessions) as session:
        expired = create_key(session, "erin", expires_at=datetime.now(UTC) - timedelta(minutes=1))
        valid = create_key(session, "erin", expires_at=datetime.now(UTC) + timedelta(days=1))
        revoked = create_key(session, "erin")
        revoke_key(session, revoked[:12])
    for key, status in ((expired, 401), (valid, 200), (revoked, 401)):
        assert service.client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == status


def test_keys_are_listed_by_prefix_and_revoked_from_the_cli(service, monkeypatch, capsys):
    code, out = _admin(service, monkeypatch, capsys, "create-key", "--tenant", "frank")
    key = out.split()[-1]
    code, listed = _admin(service, monkeypatch, capsys, "list-keys", "--tenant", "frank")
    assert code == 0 and key[:12] in listed and key not in listed
    code, _ = _admin(service, monkeypatch, capsys, "revoke-key", key[:12])
    assert code == 0
    assert service.client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert _admin(service, monkeypatch, capsys, "revoke-key", "gisp_nothing")[0] == 1
