"""Client behaviour that needs no gisp server: safe extraction, checksum checks, resumed downloads,
problem+json errors, pagination and the CLI's error line."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
from pathlib import Path

import pytest

from gisp.cli import main
from gisp_service.client import ChecksumMismatchError, GispAPIError, GispClient, GispClientError, UnsafeArchiveError
from gisp_service.client.archive import etag_digest, extract_archive, verify_sha256
from gisp_service.client.cli import count
from tests.client.fileserver import ArchiveServer


def make_tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "archive.tar"
    path.write_bytes(data)
    return path


FOLDER = {"config.json": b'{"model_type": "gisp_llama"}', "model.safetensors": bytes(range(256)) * 4000}


@pytest.mark.parametrize(
    "members,links",
    [
        ({"config.json": b"{}", "../escape.txt": b"x"}, None),
        ({"sub/../../escape.txt": b"x"}, None),
        ({"/tmp/gisp-absolute-escape.txt": b"x"}, None),
        ({"config.json": b"{}"}, {"link": "../../etc/passwd"}),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink"],
)
def test_unsafe_members_are_rejected_before_anything_is_written(tmp_path, members, links):
    archive = write(tmp_path, make_tar(members, links))
    out = tmp_path / "nested" / "out"
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, out)
    assert not out.exists()
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "nested" / "escape.txt").exists()
    assert not Path("/tmp/gisp-absolute-escape.txt").exists()
    assert [p.name for p in (tmp_path / "nested").iterdir()] == []  # no staging folder left behind


def test_extract_root_and_single_folder_layouts(tmp_path):
    flat = extract_archive(write(tmp_path, make_tar(FOLDER)), tmp_path / "flat")
    assert (flat / "model.safetensors").read_bytes() == FOLDER["model.safetensors"]
    wrapped = make_tar({f"sparsity-0.30/{k}": v for k, v in FOLDER.items()})
    out = extract_archive(write(tmp_path, wrapped), tmp_path / "wrapped")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_extract_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(GispClientError, match="not empty"):
        extract_archive(write(tmp_path, make_tar(FOLDER)), tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_sha256_mismatch_raises(tmp_path):
    archive = write(tmp_path, make_tar(FOLDER))
    good = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert verify_sha256(archive, good.upper()) == good
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        verify_sha256(archive, "0" * 64)
    assert etag_digest(f'W/"{good}"') == good and etag_digest(None) is None


def test_download_with_a_wrong_etag_leaves_nothing(tmp_path):
    with ArchiveServer(make_tar(FOLDER)) as server, GispClient(server.url) as client:
        server.etag = "f" * 64
        with pytest.raises(ChecksumMismatchError):
            client.download("ckpt_1", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the temp tar


def test_interrupted_download_resumes_with_range_and_if_range(tmp_path):
    body = make_tar(FOLDER)
    seen: list[tuple[int, int | None]] = []
    with ArchiveServer(body) as server, GispClient(server.url) as client:
        server.cut_after = len(body) // 3
        out = client.download("ckpt_1", tmp_path / "model", on_progress=lambda n, total: seen.append((n, total)))
        first, second = server.requests
    assert "range" not in first
    assert second["range"] == f"bytes={len(body) // 3}-"
    assert second["if-range"] == server.current_etag()
    assert (out / "model.safetensors").read_bytes() == FOLDER["model.safetensors"]
    assert seen[-1] == (len(body), len(body))


def test_changed_archive_restarts_from_zero(tmp_path):
    old, new = make_tar(FOLDER), make_tar({**FOLDER, "config.json": b'{"model_type": "gisp_llama", "v": 2}'})
    with ArchiveServer(old) as server, GispClient(server.url) as client:
        server.cut_after, server.next_body = 1000, new  # If-Range no longer matches: full 200 answer
        out = client.download("ckpt_1", tmp_path / "model")
        assert [r.get("range") for r in server.requests] == [None, "bytes=1000-"]
    assert b'"v": 2' in (out / "config.json").read_bytes()


def test_problem_json_is_parsed_into_a_readable_error():
    body = (
        b'{"type": "about:blank", "title": "Unprocessable Content", "status": 422, '
        b'"detail": "targets: target 1.5 is outside (0, 1)", '
        b'"errors": [{"field": "targets", "message": "target 1.5 is outside (0, 1)"}]}'
    )
    err = GispAPIError.from_response(422, body, "application/problem+json")
    assert (err.status, err.title, err.errors[0]["field"]) == (422, "Unprocessable Content", "targets")
    assert str(err) == "422 Unprocessable Content: targets: target 1.5 is outside (0, 1)"
    other = GispAPIError.from_response(
        404,
        b'{"title": "Not Found", "status": 404, "detail": "no such job", "errors": [{"field": "id", "message": "x"}]}',
    )
    assert str(other) == "404 Not Found: no such job (id: x)"
    fastapi = GispAPIError.from_response(422, b'{"detail": [{"loc": ["body", "steps"], "msg": "must be > 0"}]}')
    assert fastapi.errors == [{"field": "steps", "message": "must be > 0"}] and "steps: must be > 0" in str(fastapi)
    plain = GispAPIError.from_response(502, b"<html>Bad Gateway</html>", "text/html", "Bad Gateway")
    assert str(plain) == "502 Bad Gateway: <html>Bad Gateway</html>"


def test_http_errors_raise_gisp_api_error_and_lists_follow_the_cursor():
    with ArchiveServer(b"") as server, GispClient(server.url, "key") as client:
        with pytest.raises(GispAPIError) as caught:
            client.get_job("job_missing")
        assert caught.value.status == 404 and caught.value.errors[0]["field"] == "checkpoint_id"
        assert server.requests[0]["authorization"] == "Bearer key"
        server.pages = {"start": [{"id": "job_3"}, {"id": "job_2"}], "job_2": [{"id": "job_1"}], "job_1": []}
        server.pages["last"] = []
        server.pages["job_1"] = [{"id": "job_0"}]
        server.pages["job_0"] = []
        ids = [job["id"] for job in client.list_jobs(page_size=2)]
    assert ids == ["job_3", "job_2", "job_1", "job_0"]


def test_budget_counts():
    assert count("195000") == 195_000 and count("195k") == 195_000 and count("1.5M") == 1_500_000
    assert count("2Gi") == 2 * 2**30 and count("1e6") == 1_000_000
    with pytest.raises(Exception, match="expected a number"):
        count("lots")


def test_cli_reports_an_unreachable_server_in_one_line(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(["status", "job_x", "--url", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("gisp: error: cannot reach the gisp service")
    assert "Traceback" not in err


def test_cli_download_needs_a_budget(capsys, tmp_path):
    assert main(["download", "job_x", "--out", str(tmp_path / "o"), "--url", "http://127.0.0.1:9"]) != 0
    assert "give at least one budget" in capsys.readouterr().err
