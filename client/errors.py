"""Client-side errors. A server's RFC 9457 problem+json body becomes a `GispAPIError` whose str is
one readable line, so that the CLI can print it as is."""

from __future__ import annotations

import json
from typing import Any


class GispClientError(Exception):
    """Base class of everything the client raises on purpose."""


class GispAPIError(GispClientError):
    """A non-2xx answer. `errors` lists `{"field", "message"}` entries when the server named fields."""

    def __init__(
        self, status: int, title: str, detail: str | None = None, errors: list[dict[str, Any]] | None = None
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors or [])
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.status} {self.title}"
        if self.detail and self.detail != self.title:
            text += f": {self.detail}"
        named = [f"{e.get('field')}: {e.get('message')}" for e in self.errors if e.get("field")]
        extra = [n for n in named if self.detail is None or n not in self.detail]
        if extra:
            text += " (" + "; ".join(extra) + ")"
        return text

    @classmethod
    def from_response(cls, status: int, body: bytes, content_type: str = "", reason: str = "") -> GispAPIError:
        """Parse a problem+json (or plain JSON / text) body; never raises while doing so."""
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                payload = None
        if isinstance(payload, dict):
            title = str(payload.get("title") or reason or "error")
            detail = payload.get("detail")
            if detail is None and "detail" not in payload and "message" in payload:
                detail = payload["message"]
            errors = payload.get("errors")
            if isinstance(detail, list):  # FastAPI's default validation body: {"detail": [{"loc", "msg"}]}
                items = [d for d in detail if isinstance(d, dict)]
                errors = [{"field": _loc(d.get("loc", [])), "message": d.get("msg")} for d in items]
                detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            if not isinstance(errors, list):
                errors = []
            clean = [e for e in errors if isinstance(e, dict)]
            return cls(status, title, None if detail is None else str(detail), clean)
        text = body.decode("utf-8", "replace").strip() if body else ""
        return cls(status, reason or "error", text[:500] or None)


class ChecksumMismatchError(GispClientError):
    """The downloaded archive's sha256 differs from the server's ETag."""


class UnsafeArchiveError(GispClientError):
    """An archive member would land outside the target folder (absolute path, `..`, links, devices)."""


def _loc(loc: list[Any]) -> str:
    """FastAPI's `loc` (["body", "targets", 0]) as a field path ("targets.0")."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts)
