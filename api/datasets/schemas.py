from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    format: Literal["txt", "jsonl"]
    kind: Literal["text", "completion", "choice"]
    records: int
    bytes: int
    sha256: str
    created_at: datetime


class DatasetPage(BaseModel):
    data: list[DatasetOut]
    has_more: bool
