"""Schemas shared by the domains."""

from __future__ import annotations

from pydantic import BaseModel


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


PROBLEMS = {code: {"model": Problem, "content": {"application/problem+json": {}}} for code in (401, 404, 409, 413, 422)}
