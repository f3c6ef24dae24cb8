"""Conditional and ranged downloads over Starlette's FileResponse (which serves Range, If-Range
and HEAD): `If-None-Match` compared as RFC 9110 says (weak comparison, a list of tags, `*`), an
invalid `Range` ignored (a 200 with the whole file) instead of a 400, and an unsatisfiable one a
problem+json 416 like every other error."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request, Response
from fastapi.responses import FileResponse
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from gisp_service.api.errors import problem_response


def none_match(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header matches `etag` (a strong tag, quoted)."""
    if header is None:
        return False
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or etag in [tag.removeprefix("W/") for tag in tags]


def file_response(request: Request, path: Path, sha256: str, media_type: str, filename: str) -> Response:
    etag = f'"{sha256}"'
    if none_match(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    header = request.headers.get("range")
    if header is not None:
        try:  # the parser FileResponse itself uses, so both decide alike
            FileResponse._parse_range_header(header, path.stat().st_size)
        except MalformedRangeHeader:
            request.scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k != b"range"]
        except RangeNotSatisfiable:
            size = path.stat().st_size
            return problem_response(
                416,
                f"the range {header!r} starts past the end of the {size}-byte file",
                [{"field": "Range", "message": f"the file has {size} bytes"}],
                {"Content-Range": f"bytes */{size}", "ETag": etag},
            )
    return FileResponse(
        path, media_type=media_type, filename=filename, headers={"ETag": etag, "X-Checksum-SHA256": sha256}
    )
