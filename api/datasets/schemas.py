from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field

from gisp.data.columns import DEFAULT_NAMES, MAX_NAME

UploadFormat = Literal["txt", "jsonl", "json", "csv", "parquet", "arrow", "zip"]


def _column(part: str) -> object:
    return Field(None, min_length=1, max_length=MAX_NAME, description=f"the column holding the {part!r} field")


class ColumnMapping(BaseModel):
    """Which columns hold the records' parts: `text_field`, or `prompt_field`/`completion_field`, or
    `question_field`/`choices_field`/`answer_field`; a part left out keeps its .jsonl name."""

    model_config = ConfigDict(extra="forbid")

    text_field: str | None = _column(DEFAULT_NAMES["text_field"])  # type: ignore[assignment]
    prompt_field: str | None = _column(DEFAULT_NAMES["prompt_field"])  # type: ignore[assignment]
    completion_field: str | None = _column(DEFAULT_NAMES["completion_field"])  # type: ignore[assignment]
    question_field: str | None = _column(DEFAULT_NAMES["question_field"])  # type: ignore[assignment]
    choices_field: str | None = _column(DEFAULT_NAMES["choices_field"])  # type: ignore[assignment]
    answer_field: str | None = _column(DEFAULT_NAMES["answer_field"])  # type: ignore[assignment]


class DatasetFields(ColumnMapping):
    """The upload form's text fields: an optional name and an optional column mapping."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, max_length=300, description="a display name (default: the file's name)")


class DatasetUpload(ColumnMapping):
    """A multipart upload: the file, an optional name and an optional column mapping."""

    model_config = ConfigDict(extra="ignore")

    file: UploadFile = Field(
        description=".txt (one text stream), .jsonl (text, prompt/completion or choice records), or a table read "
        "with `datasets`: .json, .csv, .parquet, .arrow, or a zipped save_to_disk folder"
    )
    name: str | None = Field(None, max_length=300, description="a display name (default: the file's name)")


class DatasetOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "ds_0193c2a4f1b2a7c3d4e5",
                    "name": "stories.parquet",
                    "format": "parquet",
                    "kind": "text",
                    "records": 2000,
                    "bytes": 600878,
                    "sha256": "416eb5a3228ea5d7" + "0" * 48,
                    "canonical_sha256": "9a1c0e7b5d3f2a41" + "0" * 48,
                    "columns": {"text_field": "body"},
                    "created_at": "2026-12-01T10:00:00Z",
                }
            ]
        },
    )

    id: str
    name: str
    format: UploadFormat = Field(description="the upload's format, as sent")
    kind: Literal["text", "completion", "choice"] = Field(description="the record kind, fixed by the first record")
    records: int
    bytes: int = Field(description="the upload's size")
    sha256: str = Field(description="of the upload as sent (kept in the store)")
    canonical_sha256: str = Field(
        description="of the engine-readable file jobs read (.txt or .jsonl); the upload's own for those formats"
    )
    columns: dict[str, str] = Field(description="the column mapping given at upload")
    created_at: datetime
