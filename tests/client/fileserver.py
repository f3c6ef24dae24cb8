"""A real HTTP server on a thread for the client's unit tests: it serves one tar the way the API's
download endpoint does (ETag, Range, If-Range) and can cut a transfer short or swap the archive,
to exercise resume and checksum paths that a healthy server never shows."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ArchiveServer:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.etag: str | None = None  # None: the real sha256
        self.cut_after: int | None = None  # close the next full or partial answer after this many bytes
        self.next_body: bytes | None = None  # served from the request after a cut on
        self.requests: list[dict[str, str]] = []
        self.pages: dict[str, list[dict[str, Any]]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                if self.path.startswith("/v1/jobs?") or self.path == "/v1/jobs":
                    return self._jobs()
                if not self.path.endswith("/download"):
                    return self._problem(404, "Not Found", f"no resource at {self.path}", "checkpoint_id")
                server._serve(self)

            def _jobs(self) -> None:
                after = self.path.partition("after=")[2].partition("&")[0] or "start"
                self._json(200, {"data": server.pages[after], "has_more": after != "last"})

            def _problem(self, status: int, title: str, detail: str, field: str) -> None:
                body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
                body["errors"] = [{"field": field, "message": detail}]
                self._json(status, body, "application/problem+json")

            def _json(self, status: int, body: Any, ctype: str = "application/json") -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def current_etag(self) -> str:
        return '"' + (self.etag or hashlib.sha256(self.body).hexdigest()) + '"'

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        etag = self.current_etag()
        start = 0
        wanted = handler.headers.get("Range")
        if wanted and handler.headers.get("If-Range") == etag:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
        chunk = self.body[start:]
        handler.send_response(206 if start else 200)
        handler.send_header("Content-Type", "application/x-tar")
        handler.send_header("ETag", etag)
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(len(chunk)))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(self.body) - 1}/{len(self.body)}")
        handler.end_headers()
        if self.cut_after is not None:
            handler.wfile.write(chunk[: self.cut_after])
            handler.wfile.flush()
            handler.close_connection = True
            self.cut_after = None
            if self.next_body is not None:
                self.body, self.next_body = self.next_body, None
            return
        handler.wfile.write(chunk)

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
