"""Schemas every domain shares: the page of a cursor-paged list."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a list, newest first; pass the last id as `after` for the next page."""

    data: list[Item]
    has_more: bool = Field(description="whether a next page exists")
