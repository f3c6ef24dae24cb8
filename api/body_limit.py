"""A size limit on request bodies other than uploads (JSON): a body declared larger is refused
before it is read, and one sent without a length (chunked) is cut off at the limit, each with a
413 problem+json. Uploads have their own, larger limit (api/datasets/upload.py)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gisp_service.api.errors import problem_response

UPLOAD_TYPE = b"multipart/form-data"


class BodyLimit:
    """Also: a body sent to the API (`/v1/`) is JSON, or multipart where an upload route takes it;
    anything else is a 415 before the body is read."""

    def __init__(self, app: ASGIApp, limit: int, upload_paths: tuple[str, ...] = ()) -> None:
        self.app, self.limit, self.upload_paths = app, limit, upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == UPLOAD_TYPE and scope["path"] in self.upload_paths:
            await self.app(scope, receive, send)
            return
        has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
        json_type = content_type == b"application/json" or content_type.endswith(b"+json")
        if scope["path"].startswith("/v1/") and has_body and not json_type:
            sent = content_type.decode("latin-1") or "none"
            detail = f"unsupported content type {sent}; send the body as application/json"
            await problem_response(415, detail, [{"field": "Content-Type", "message": detail}])(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        # read the body here, up to the limit (a JSON body is parsed whole anyway), then replay it
        chunks, received, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            more = message.get("more_body", False)
            if received > self.limit:
                await self._refuse(scope, receive, send)
                return
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is larger than the limit of {self.limit} bytes (GISP_MAX_BODY_BYTES)"
        response = problem_response(413, detail, [{"field": "body", "message": detail}], {"Connection": "close"})
        await response(scope, receive, send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A `receive` that gives `messages` first, then the real channel's (a disconnect)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive
