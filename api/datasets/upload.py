"""Receiving an upload: the multipart body is parsed as it arrives (after the key was checked:
the route reads no body before its dependencies ran), the file part written to a staging file in
chunks and hashed on the way, so memory stays bounded whatever the size. A declared
Content-Length over the limit is refused before reading; a body without one (chunked) is cut off
at the limit. Every refusal is a problem+json naming what the client should send."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from anyio import to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from gisp_service.api.errors import ApiProblem
from gisp_service.core.artifacts import ArtifactStore

MULTIPART_OVERHEAD = 64 * 1024  # form boundaries, headers and the small text fields around the file
MAX_FIELD_BYTES = 4096  # a text field (name, a column mapping) is short
MAX_PARTS = 32
FILE_FIELD = "file"
HOW = "send multipart/form-data with the data as a file part named 'file' (e.g. curl -F file=@data.txt)"


def too_large(limit: int) -> ApiProblem:
    return ApiProblem(
        413,
        f"the upload is larger than the limit of {limit} bytes (GISP_MAX_UPLOAD_BYTES)",
        "file",
        headers={"Connection": "close"},
    )


def check_declared_size(content_length: str | None, limit: int) -> None:
    """Refuse a body whose declared size is over the limit before reading any of it."""
    if content_length and content_length.isdigit() and int(content_length) > limit + MULTIPART_OVERHEAD:
        raise too_large(limit)


@dataclass
class Received:
    """The text fields and the staged file of one upload (`discard` removes the file if unused)."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    staged: Path | None = None
    sha256: str = ""
    size: int = 0
    file_as_text: bool = False

    def discard(self) -> None:
        if self.staged is not None:
            self.staged.unlink(missing_ok=True)


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    is_file: bool = False
    text: bytearray = field(default_factory=bytearray)


class _Receiver:
    """The parser's callbacks: they collect text fields and queue file bytes for the writer."""

    def __init__(self, store: ArtifactStore, limit: int) -> None:
        self.store, self.limit = store, limit
        self.result = Received()
        self.part = _Part()
        self.header_name, self.header_value = b"", b""
        self.headers: dict[bytes, bytes] = {}
        self.pending: list[bytes] = []
        self.handle: BinaryIO | None = None
        self.digest = hashlib.sha256()
        self.parts = 0

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._add("header_name", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
        }

    def _add(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiProblem(422, f"the form has more than {MAX_PARTS} parts", "body")
        self.part, self.headers = _Part(), {}

    def _header_end(self) -> None:
        self.headers[self.header_name.lower()] = self.header_value
        self.header_name, self.header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if self.part.name == FILE_FIELD and filename is not None:
            if self.result.staged is not None:
                raise ApiProblem(422, "send one file part named 'file'", FILE_FIELD)
            self.part.is_file = True
            self.result.filename = Path(filename.decode("utf-8", "replace")).name
            self.handle, self.result.staged = self.store.open_staging(Path(self.result.filename).suffix.lower())

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.part.is_file:
            self.result.size += end - start
            if self.result.size > self.limit:
                raise too_large(self.limit)
            self.pending.append(data[start:end])
        else:
            self.part.text += data[start:end]
            if len(self.part.text) > MAX_FIELD_BYTES:
                raise ApiProblem(422, f"at most {MAX_FIELD_BYTES} bytes", self.part.name or "body")

    def _part_end(self) -> None:
        if self.part.is_file:
            return
        if self.part.name == FILE_FIELD:
            self.result.file_as_text = True
        elif self.part.name:
            self.result.fields[self.part.name] = self.part.text.decode("utf-8", "replace")

    def write_pending(self) -> None:
        """Runs in a worker thread: the queued file bytes go to disk and into the hash."""
        if self.handle is not None and self.pending:
            for chunk in self.pending:
                self.digest.update(chunk)
                self.handle.write(chunk)
        self.pending.clear()

    def finish(self) -> Received:
        if self.handle is not None:
            self.write_pending()
            self.store.close_staging(self.handle)
            self.handle = None
            self.result.sha256 = self.digest.hexdigest()
        return self.result

    def abandon(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        self.result.discard()


async def receive(request: Request, store: ArtifactStore, limit: int) -> Received:
    """Parse the request's multipart body into text fields and one staged file."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise ApiProblem(415, f"unsupported content type; {HOW}", "Content-Type")
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiProblem(400, f"the multipart body has no boundary; {HOW}", "Content-Type")
    check_declared_size(request.headers.get("content-length"), limit)
    receiver = _Receiver(store, limit)
    parser = MultipartParser(boundary, receiver.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + MULTIPART_OVERHEAD:
                raise too_large(limit)
            parser.write(chunk)
            if receiver.pending:
                await to_thread.run_sync(receiver.write_pending)
        parser.finalize()
        result = await to_thread.run_sync(receiver.finish)
    except MultipartParseError as exc:
        receiver.abandon()
        raise ApiProblem(400, f"the body is not valid multipart/form-data ({exc}); {HOW}", "body") from None
    except ClientDisconnect:
        receiver.abandon()
        raise ApiProblem(400, "the client disconnected before the upload was complete", "body") from None
    except BaseException:
        receiver.abandon()
        raise
    if result.staged is None:
        result.discard()
        got = "a text field named 'file', not a file" if result.file_as_text else "no file part"
        raise ApiProblem(422, f"the form has {got}; {HOW}", FILE_FIELD)
    return result
