"""Tables read with `datasets`: every format gives the records the .jsonl reader gives, column
mappings pick the fields, bad rows are named by number and field, and a hub-style source (a local
mirror folder through the same streaming `load_dataset` call) is capped at its row count."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from gisp.data import Columns, inspect_dataset, read_records, write_records
from gisp.data.hub import read_hub_records
from gisp.errors import DataFormatError

datasets = pytest.importorskip("datasets", reason="the `data` extra (datasets) is not installed")

ROWS = [
    {"body": "Once upon a time", "q": "Is it?", "opts": ["yes", "no"], "gold": 0, "n": 1},
    {"body": "there was a cat", "q": "Was it?", "opts": ["no", "yes"], "gold": 1, "n": 2},
    {"body": "who liked milk", "q": "Did it?", "opts": ["yes", "no", "maybe"], "gold": 2, "n": 3},
]


def write_table(folder: Path, fmt: str, rows: list[dict] = ROWS) -> Path:
    """`rows` as a file (or folder) of format `fmt`, written by `datasets` as a user would."""
    table = datasets.Dataset.from_list(rows)
    path = folder / f"data.{fmt}"
    if fmt == "parquet":
        table.to_parquet(str(path))
    elif fmt == "csv":
        table.remove_columns([c for c in ("opts",) if c in table.column_names]).to_csv(str(path), index=False)
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "arrow":
        table.save_to_disk(str(folder / "saved"))
        shutil.copy(next((folder / "saved").glob("*.arrow")), path)
    elif fmt == "folder":
        path = folder / "saved_folder"
        table.save_to_disk(str(path))
    elif fmt == "zip":
        table.save_to_disk(str(folder / "to_zip" / "mydata"))
        with zipfile.ZipFile(path, "w") as archive:
            for file in (folder / "to_zip").rglob("*"):
                archive.write(file, file.relative_to(folder / "to_zip").as_posix())
    return path


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet", "arrow", "folder", "zip"])
def test_every_format_reads_the_mapped_text_column(tmp_path: Path, fmt: str) -> None:
    path = write_table(tmp_path, fmt)
    kind, records = read_records(path, Columns(text_field="body"))
    assert kind == "text" and [r.text for r in records] == [r["body"] for r in ROWS]
    info = inspect_dataset(path, Columns(text_field="body"))
    assert (info.format, info.records, len(info.sha256)) == (fmt, 3, 64)


def test_choice_mapping_and_canonical_round_trip(tmp_path: Path) -> None:
    columns = Columns(question_field="q", choices_field="opts", answer_field="gold")
    kind, records = read_records(write_table(tmp_path, "parquet"), columns)
    assert kind == "choice" and records[2].choices == ("yes", "no", "maybe") and records[2].answer == 2
    canonical = tmp_path / "canonical.jsonl"
    with canonical.open("wb") as handle:
        write_records(handle, records)
    assert read_records(canonical) == (kind, records)


def test_csv_choices_as_json_cells(tmp_path: Path) -> None:
    path = tmp_path / "mc.csv"
    path.write_text('question,choices,answer\nIs it?,"[""yes"", ""no""]",1\n')
    kind, records = read_records(path)
    assert kind == "choice" and records[0].choices == ("yes", "no") and records[0].answer == 1


@pytest.mark.parametrize(
    ("rows", "columns", "row", "field"),
    [
        ([{"body": "a"}, {"body": None}], Columns(text_field="body"), 2, "body"),
        ([{"body": 7}], Columns(text_field="body"), 1, "body"),
        ([{"x": "a"}], Columns(text_field="body"), 1, "body"),
        ([{"p": "a", "c": "b"}, {"p": "a", "c": None}], Columns(prompt_field="p", completion_field="c"), 2, "c"),
        (
            [{"q": "a", "o": ["x", "y"], "g": 0}, {"q": "a", "o": ["x", "y"], "g": 5}],
            Columns(question_field="q", choices_field="o", answer_field="g"),
            2,
            "g",
        ),
    ],
)
def test_bad_rows_name_row_and_field(tmp_path: Path, rows: list, columns: Columns, row: int, field: str) -> None:
    with pytest.raises(DataFormatError) as info:
        read_records(write_table(tmp_path, "parquet", rows), columns)
    assert (info.value.row, info.value.field) == (row, field)
    assert info.value.message.startswith(f"row {row}: ")


def test_mappings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="mixes record kinds"):
        Columns(text_field="a", prompt_field="b")
    with pytest.raises(DataFormatError, match="unknown column mapping"):
        Columns.from_dict({"txt_field": "a"})
    text = tmp_path / "a.txt"
    text.write_text("words")
    with pytest.raises(DataFormatError, match="no columns"):
        read_records(text, Columns(text_field="body"))


def test_unreadable_tables_and_unsafe_zips(tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataFormatError, match="broken.parquet"):
        read_records(broken)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../outside/state.json", "{}")
    with pytest.raises(DataFormatError, match="unsafe member"):
        read_records(evil)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(DataFormatError, match="no save_to_disk folder"):
        read_records(empty)


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_a_mirror_folder_streams_through_load_dataset_with_a_row_cap(tmp_path: Path, fmt: str) -> None:
    mirror = tmp_path / "mirror" / "org" / "name"
    mirror.mkdir(parents=True)
    write_table(tmp_path, fmt).rename(mirror / f"train.{fmt}")
    kind, records = read_hub_records(str(mirror), split="train", rows=2, columns=Columns(text_field="body"))
    assert kind == "text" and [r.text for r in records] == ["Once upon a time", "there was a cat"]
    with pytest.raises(DataFormatError, match="cannot be opened") as info:
        read_hub_records(str(mirror), split="validation", rows=2)
    assert info.value.field == "hub"
