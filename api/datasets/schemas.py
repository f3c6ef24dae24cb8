from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field


class DatasetUpload(BaseModel):
    """A multipart upload: the file and an optional name."""

    file: UploadFile = Field(description=".txt (one text stream) or .jsonl (text, prompt/completion or choice records)")
    name: str | None = Field(None, max_length=300, description="a display name (default: the file's name)")


class DatasetOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "ds_0193c2a4f1b2a7c3d4e5",
                    "name": "tinystories.txt",
                    "format": "txt",
                    "kind": "text",
                    "records": 1,
                    "bytes": 600878,
                    "sha256": "416eb5a3228ea5d7" + "0" * 48,
                    "created_at": "2026-12-01T10:00:00Z",
                }
            ]
        },
    )

    id: str
    name: str
    format: Literal["txt", "jsonl"]
    kind: Literal["text", "completion", "choice"] = Field(description="the record kind, fixed by the first record")
    records: int
    bytes: int
    sha256: str
    created_at: datetime
