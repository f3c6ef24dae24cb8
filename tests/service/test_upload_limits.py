"""Uploads against a live `gisp serve --no-worker` over real sockets (issue 13): the key is checked
before the body is read, a declared size over the limit is refused before reading, and a body
without a length is cut off at the limit; none of them leaves a staged file behind."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from tests.conftest import shared_path
from tests.live import LiveServer, live_server

pytestmark = pytest.mark.service
LIMIT = 1024 * 1024
BOUNDARY = "gispboundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    models = shared_path("models", "stories260K").parent
    env = {"GISP_MAX_UPLOAD_BYTES": str(LIMIT)}
    with live_server(tmp_path_factory.mktemp("gisp-uploads"), models, "--no-worker", env=env) as live:
        yield live


def _staged(server: LiveServer) -> list[str]:
    staging = server.data_dir / "artifacts" / "uploads" / ".staging"
    return sorted(p.name for p in staging.iterdir()) if staging.is_dir() else []


def _send(server: LiveServer, headers: dict[str, str], chunks: Iterator[bytes]) -> tuple[int, dict, int]:
    """Send a request over a raw socket, stopping when the server answers or closes; returns the
    status, the problem body and how many body bytes were sent."""
    url = urlparse(server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": url.netloc, **headers}.items())
    sock.sendall(f"POST /v1/datasets HTTP/1.1\r\n{head}\r\n".encode())
    sent = 0
    sock.setblocking(False)
    try:
        for chunk in chunks:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break  # the server answered: stop sending
            except BlockingIOError:
                pass
            sock.setblocking(True)
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            sock.setblocking(False)
    finally:
        sock.setblocking(True)
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    sock.close()
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1][: _length(data)]), sent


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _multipart(size: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    yield (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n').encode()
    for _ in range(size // chunk):
        yield b"a" * chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _chunked(parts: Iterator[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield b"0\r\n\r\n"


FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
BIG = 600 * 1024 * 1024  # declared: the server must answer long before this much is sent


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(server):
    status, body, sent = _send(server, {**FORM, "Content-Length": str(BIG)}, _multipart(BIG))
    assert status == 401 and body["errors"][0]["field"] == "Authorization"
    assert sent < 64 * LIMIT  # at most what the socket buffers took before the answer came
    status, _, sent = _send(server, {**FORM, "Transfer-Encoding": "chunked"}, _chunked(_multipart(BIG)))
    assert status == 401 and sent < 64 * LIMIT
    assert _staged(server) == []


def test_a_declared_size_over_the_limit_is_refused_before_reading(server):
    headers = {**FORM, **server.headers, "Content-Length": str(BIG)}
    status, body, sent = _send(server, headers, _multipart(BIG))
    assert status == 413 and body["errors"][0]["field"] == "file" and str(LIMIT) in body["detail"]
    assert sent < 64 * LIMIT and _staged(server) == []


def test_a_chunked_body_is_cut_off_at_the_limit(server):
    headers = {**FORM, **server.headers, "Transfer-Encoding": "chunked"}
    status, body, sent = _send(server, headers, _chunked(_multipart(BIG)))
    assert status == 413 and body["errors"][0]["field"] == "file"
    assert sent < 64 * LIMIT and _staged(server) == []


def test_a_streamed_upload_within_the_limit_is_filed_by_its_hash(server):
    import hashlib

    import httpx

    payload = ("Once upon a time there was a tiny model. " * 20_000)[: LIMIT - 10].encode()
    response = httpx.post(
        f"{server.url}/v1/datasets", files={"file": ("stories.txt", payload)}, headers=server.headers, timeout=60
    )
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(payload).hexdigest()
    assert response.json()["bytes"] == len(payload) and _staged(server) == []
