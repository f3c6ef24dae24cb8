"""RFC 9457 problem+json for every error, each naming the offending field where there is one, and
the OpenAPI description of those errors (`problems(...)` per route)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with the offending fields."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] = []


WHY = {
    400: "the request is malformed",
    401: "missing or invalid API key",
    404: "no such resource for this tenant",
    409: "the resource's state does not allow it",
    413: "the upload is larger than the limit",
    415: "unsupported media type",
    416: "the requested range is not satisfiable",
    422: "invalid input; `errors` names each offending field",
    429: "a rate limit or quota was reached; `Retry-After` says when to try again",
    503: "a dependency (database, broker) does not answer",
    507: "the server's storage is full; retry later (Retry-After)",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes a route can return, as problem+json."""
    ref = {"$ref": "#/components/schemas/Problem"}
    return {code: {"description": WHY[code], "content": {PROBLEM_JSON: {"schema": ref}}} for code in codes}


class ApiProblem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        field: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers
        self.errors = errors if errors is not None else ([{"field": field, "message": detail}] if field else [])


def not_found(kind: str, resource_id: str, field: str = "id") -> ApiProblem:
    return ApiProblem(404, f"{kind} {resource_id!r} not found", field=field)


Found = TypeVar("Found")


def found(row: Found | None, kind: str, resource_id: str, field: str) -> Found:
    """`row`, or a 404 naming the resource (another tenant's row is looked up as None)."""
    if row is None:
        raise not_found(kind, resource_id, field)
    return row


def problem_response(
    status: int, detail: str, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body = {
        "type": f"https://gisp.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": errors or [],
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# what FastAPI raises (400) when a body fails to decode before JSON parsing could name a position
FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or str(loc[0] if loc else "body")


def _error(error: dict[str, Any]) -> dict[str, str]:
    """One pydantic error as a field and a message; a body that is not JSON names the body
    (pydantic reports the character position as the field)."""
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return {"field": "body", "message": f"the body is not valid JSON ({reason}); send a JSON object"}
    return {"field": _field(tuple(error.get("loc", ()))), "message": error.get("msg", "invalid")}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _problem(_request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_error(e) for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return problem_response(422, detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        detail = str(exc.detail)
        if exc.status_code == 400 and detail == FASTAPI_BODY_PARSE_ERROR:  # e.g. bytes that are not UTF-8
            message = "the body could not be read as JSON text (is it UTF-8?); send a JSON object"
            return problem_response(422, f"body: {message}", [{"field": "body", "message": message}])
        if exc.status_code == 405:  # every method of the path, not only the first matching route's
            from gisp_service.api.methods import allowed_methods

            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
            detail = f"{request.method} is not allowed here; use {headers['Allow']}"
        return problem_response(exc.status_code, detail, headers=headers or None)
