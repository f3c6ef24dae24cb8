"""Reading data files into typed records, with errors that name the line (or row) and field.

Formats: `.txt` (one text stream), `.jsonl` whose lines are all `{"text"}`, all
`{"prompt", "completion"}` or all multiple-choice `{"question" | "context", "choices", "answer"}`;
and through the `datasets` library (`gisp/data/tabular.py`) `.json`, `.csv`, `.parquet`, `.arrow`
and `save_to_disk` folders (zipped or not), whose columns hold the same fields or are mapped to
them by `Columns`. The kind is fixed by the first record; a later one of another shape is an error.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import IO, Literal, get_args

from gisp.data.columns import DEFAULT_COLUMNS, Columns, RecordKind
from gisp.errors import DataFormatError

DataFormat = Literal["txt", "jsonl", "json", "csv", "parquet", "arrow", "zip", "folder"]
FORMATS: tuple[str, ...] = get_args(DataFormat)
SUFFIXES = tuple(f".{f}" for f in FORMATS if f != "folder")


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

    format: DataFormat
    kind: RecordKind
    records: int
    bytes: int
    sha256: str


def _kind_of(obj: dict, names: Columns) -> RecordKind | None:
    if names.choices in obj:
        return "choice"
    if names.prompt in obj or names.completion in obj:
        return "completion"
    if names.text in obj:
        return "text"
    return None


def _kind_name(record: Record) -> RecordKind:
    if isinstance(record, TextRecord):
        return "text"
    return "completion" if isinstance(record, CompletionRecord) else "choice"


def _string_field(obj: dict, name: str, where: dict[str, int]) -> str:
    value = obj.get(name)
    if value is None:
        raise DataFormatError(f"missing field {name!r}", field=name, **where)
    if not isinstance(value, str):
        raise DataFormatError(f"field {name!r} must be a string", field=name, **where)
    return value


def _choices(value: object, name: str, where: dict[str, int]) -> list[str]:
    if isinstance(value, str) and value.lstrip().startswith("["):  # a CSV cell holds the list as JSON
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if not isinstance(value, list | tuple) or len(value) < 2 or not all(isinstance(c, str) for c in value):
        raise DataFormatError(f"field {name!r} must be a list of at least two strings", field=name, **where)
    return list(value)


def _answer(value: object, name: str, count: int, where: dict[str, int]) -> int:
    if value is None:
        raise DataFormatError(f"missing field {name!r}", field=name, **where)
    if isinstance(value, str) and value.strip().isdigit():  # a CSV cell
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
        raise DataFormatError(f"field {name!r} must be an index into choices (0..{count - 1})", field=name, **where)
    return value


def parse_record(
    obj: object, kind: RecordKind | None, where: dict[str, int], names: Columns = DEFAULT_COLUMNS
) -> Record:
    """One record from a JSON object or a table row; `where` is {"line": n} or {"row": n}.

    `kind` is the kind fixed by the first record (None for the first); `names` maps the record's
    fields to the file's columns (Columns' defaults are the .jsonl field names)."""
    if not isinstance(obj, dict):
        raise DataFormatError("each line must be a JSON object", **where)
    kind = kind or names.kind() or _kind_of(obj, names)
    if kind is None:
        raise DataFormatError(
            "missing field 'text' (or 'prompt'/'completion', or 'choices' for multiple choice)", field="text", **where
        )
    if kind == "text":
        return TextRecord(_string_field(obj, names.text, where))
    if kind == "completion":
        return CompletionRecord(_string_field(obj, names.prompt, where), _string_field(obj, names.completion, where))
    context_key = names.question
    if names.question_field is None and context_key not in obj:
        context_key = "context"  # the .jsonl reader's other spelling
    context = _string_field(obj, context_key, where)
    choices = _choices(obj.get(names.choices), names.choices, where)
    answer = _answer(obj.get(names.answer), names.answer, len(choices), where)
    return ChoiceRecord(context, tuple(choices), answer)


def records_of(
    rows: Iterable[tuple[dict[str, int], object]], names: Columns, label: str
) -> tuple[RecordKind, list[Record]]:
    """Records of one kind from (where, object) pairs; the first record fixes the kind."""
    kind: RecordKind | None = None
    records: list[Record] = []
    for where, obj in rows:
        record = parse_record(obj, kind, where, names)
        kind = kind or _kind_name(record)
        records.append(record)
    if kind is None:
        raise DataFormatError(f"{label} has no records", field="data")
    return kind, records


def _jsonl_rows(text: str) -> Iterator[tuple[dict[str, int], object]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield {"line": number}, json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"invalid JSON ({exc.msg})", line=number) from None


def data_format(path: str | Path) -> DataFormat:
    """The format of a data file or folder, from its suffix (a folder is a `save_to_disk` one)."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FORMATS or suffix == "folder":
        raise DataFormatError(
            f"unsupported data file type {path.suffix or path.name!r}; use {', '.join(SUFFIXES)} "
            "or a save_to_disk folder",
            field="data",
        )
    return suffix  # type: ignore[return-value]


def read_records(path: str | Path, columns: Columns | None = None) -> tuple[RecordKind, list[Record]]:
    """Read a data file into records of one kind: `.txt` (one stream), `.jsonl`, or through the
    `datasets` library a `.json`, `.csv`, `.parquet` or `.arrow` file, a zipped `save_to_disk`
    folder or such a folder itself. `columns` names the fields to read (default: the .jsonl names)."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"data file {str(path)!r} does not exist", field="data")
    names = columns or DEFAULT_COLUMNS
    fmt = data_format(path)
    if fmt not in ("txt", "jsonl"):
        from gisp.data.tabular import table_rows

        return records_of(table_rows(path, fmt), names, path.name)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start})", field="data"
        ) from None
    if fmt == "txt":
        if columns is not None and columns != DEFAULT_COLUMNS:
            raise DataFormatError("a .txt file is one text stream; it has no columns to map", field="text_field")
        if not text.strip():
            raise DataFormatError(f"{path.name} is empty", field="data")
        return "text", [TextRecord(text)]
    return records_of(_jsonl_rows(text), names, path.name)


def check_text_file(path: str | Path, columns: Columns | None = None) -> None:
    """Check a .txt file as `read_records` would (UTF-8, not blank, no columns to map) in 1 MiB
    pieces, so that a large upload is validated without holding it in memory."""
    path = Path(path)
    if columns is not None and columns.given():
        raise DataFormatError("a .txt file is one text stream; it has no columns to map", field="text_field")
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, blank = 0, True
    with path.open("rb") as handle:
        for chunk in chain(iter(lambda: handle.read(1 << 20), b""), [None]):  # None: the end
            try:
                text = decoder.decode(chunk or b"", final=chunk is None)
            except UnicodeDecodeError as exc:
                raise DataFormatError(
                    f"{path.name} is not UTF-8 text ({exc.reason} at byte {offset + exc.start})", field="data"
                ) from None
            blank = blank and not text.strip()
            offset += len(chunk or b"")
    if blank:
        raise DataFormatError(f"{path.name} is empty", field="data")


def record_dict(record: Record) -> dict[str, object]:
    """A record in the engine's canonical .jsonl shape."""
    if isinstance(record, TextRecord):
        return {"text": record.text}
    if isinstance(record, CompletionRecord):
        return {"prompt": record.prompt, "completion": record.completion}
    return {"context": record.context, "choices": list(record.choices), "answer": record.answer}


def write_records(handle: IO[bytes], records: Iterable[Record]) -> None:
    """Write records as canonical .jsonl, which `read_records` reads back as the same records."""
    for record in records:
        handle.write(json.dumps(record_dict(record), ensure_ascii=False).encode() + b"\n")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes; of a folder, of its files' relative names and bytes in order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def inspect_dataset(path: str | Path, columns: Columns | None = None) -> DatasetInfo:
    """Validate a file and describe it (format, record kind and count, size, sha256)."""
    path = Path(path)
    kind, records = read_records(path, columns)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return DatasetInfo(format=data_format(path), kind=kind, records=len(records), bytes=size, sha256=file_sha256(path))
