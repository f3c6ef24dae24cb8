"""Reading data files into typed records, with errors that name the line and field.

Formats: `.txt` (one text stream), `.jsonl` whose lines are all `{"text"}`, all
`{"prompt", "completion"}` or all multiple-choice `{"question" | "context", "choices", "answer"}`.
The kind is fixed by the first record; a later line of another shape is an error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gisp.errors import DataFormatError

RecordKind = Literal["text", "completion", "choice"]


@dataclass(frozen=True)
class TextRecord:
    text: str


@dataclass(frozen=True)
class CompletionRecord:
    prompt: str
    completion: str


@dataclass(frozen=True)
class ChoiceRecord:
    context: str
    choices: tuple[str, ...]
    answer: int


Record = TextRecord | CompletionRecord | ChoiceRecord


@dataclass(frozen=True)
class DatasetInfo:
    """What a data file holds, for validation at upload time."""

    format: Literal["txt", "jsonl"]
    kind: RecordKind
    records: int
    bytes: int
    sha256: str


def _kind_of(obj: dict) -> RecordKind | None:
    if "choices" in obj:
        return "choice"
    if "prompt" in obj or "completion" in obj:
        return "completion"
    if "text" in obj:
        return "text"
    return None


def _string_field(obj: dict, name: str, line: int) -> str:
    value = obj.get(name)
    if value is None:
        raise DataFormatError(f"missing field {name!r}", line=line, field=name)
    if not isinstance(value, str):
        raise DataFormatError(f"field {name!r} must be a string", line=line, field=name)
    return value


def _parse_record(obj: object, kind: RecordKind | None, line: int) -> Record:
    if not isinstance(obj, dict):
        raise DataFormatError("each line must be a JSON object", line=line)
    found = _kind_of(obj)
    if found is None:
        raise DataFormatError(
            "missing field 'text' (or 'prompt'/'completion', or 'choices' for multiple choice)", line=line, field="text"
        )
    kind = kind or found
    if kind == "text":
        return TextRecord(_string_field(obj, "text", line))
    if kind == "completion":
        return CompletionRecord(_string_field(obj, "prompt", line), _string_field(obj, "completion", line))
    context_key = "question" if "question" in obj else "context"
    context = _string_field(obj, context_key, line)
    choices = obj.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise DataFormatError("field 'choices' must be a list of at least two strings", line=line, field="choices")
    answer = obj.get("answer")
    if answer is None:
        raise DataFormatError("missing field 'answer'", line=line, field="answer")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise DataFormatError(
            f"field 'answer' must be an index into choices (0..{len(choices) - 1})", line=line, field="answer"
        )
    return ChoiceRecord(context, tuple(choices), answer)


def read_records(path: str | Path) -> tuple[RecordKind, list[Record]]:
    """Read a `.txt` or `.jsonl` file into records of one kind."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"data file {str(path)!r} does not exist", field="data")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start})", field="data"
        ) from None
    if suffix == ".txt":
        if not text.strip():
            raise DataFormatError(f"{path.name} is empty", field="data")
        return "text", [TextRecord(text)]
    if suffix != ".jsonl":
        raise DataFormatError(f"unsupported data file type {suffix or path.name!r}; use .txt or .jsonl", field="data")
    kind: RecordKind | None = None
    records: list[Record] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"invalid JSON ({exc.msg})", line=number) from None
        record = _parse_record(obj, kind, number)
        if kind is None:
            kind = (
                "text"
                if isinstance(record, TextRecord)
                else "completion"
                if isinstance(record, CompletionRecord)
                else "choice"
            )
        records.append(record)
    if kind is None:
        raise DataFormatError(f"{path.name} has no records", field="data")
    return kind, records


def inspect_dataset(path: str | Path) -> DatasetInfo:
    """Validate a file and describe it (format, record kind and count, size, sha256)."""
    path = Path(path)
    kind, records = read_records(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    fmt: Literal["txt", "jsonl"] = "txt" if path.suffix.lower() == ".txt" else "jsonl"
    return DatasetInfo(
        format=fmt, kind=kind, records=len(records), bytes=path.stat().st_size, sha256=digest.hexdigest()
    )
