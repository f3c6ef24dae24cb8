"""Schemas every domain shares: the page of a cursor-paged list and its query parameters."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a list, newest first; pass the last id as `after` for the next page."""

    data: list[Item]
    has_more: bool = Field(description="whether a next page exists")


SEQ_MAX = 2**31 - 1
"""The largest event seq (PostgreSQL's 32-bit INTEGER column; a job writes far fewer events): an
`after` beyond it is a 422 naming the parameter, not an overflow in SQL and a 500."""

PageLimit = Annotated[int, Query(ge=1, le=100, description="items per page")]
PageAfter = Annotated[str | None, Query(description="cursor: the last id of the previous page")]
