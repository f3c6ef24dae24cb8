"""Tables read with the `datasets` library (the `data` extra): `.json`, `.csv`, `.parquet` and
`.arrow` files through `load_dataset`'s packaged builders in streaming mode (rows are read as they
are iterated, nothing is cached beside the file), `save_to_disk` folders through `load_from_disk`,
and such a folder zipped. Rows are numbered from 1 for the errors that name them."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from gisp.errors import DataFormatError

BUILDERS = {"json": "json", "csv": "csv", "parquet": "parquet", "arrow": "arrow"}
# a zipped folder may expand to at most this many bytes (and this many times its own size): no zip bombs
MAX_UNZIPPED_BYTES = 8 << 30
MAX_UNZIP_RATIO = 100


def require_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise DataFormatError(
            "reading this format needs the `datasets` library: pip install 'gisp-service[data]'", field="data"
        ) from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def table_rows(path: Path, fmt: str) -> Iterator[tuple[dict[str, int], object]]:
    """(where, row) pairs of a table file or folder, `where` being {"row": n}."""
    datasets = require_datasets()
    if fmt == "zip":
        yield from _zip_rows(path)
        return
    if fmt == "folder":
        yield from numbered(_saved_dataset(path))
        return
    with tempfile.TemporaryDirectory(prefix="gisp-datasets-") as cache:
        try:
            table = datasets.load_dataset(
                BUILDERS[fmt], data_files=str(path), split="train", streaming=True, cache_dir=cache
            )
        except Exception as exc:  # the builders raise many types for unreadable files
            raise DataFormatError(f"{path.name} cannot be read as {fmt}: {first_line(exc)}", field="data") from None
        yield from numbered(table)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def numbered(table: Any) -> Iterator[tuple[dict[str, int], object]]:
    number = 0
    rows = iter(table)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # a malformed line or cell surfaces while iterating
            raise DataFormatError(f"cannot be read ({first_line(exc)})", row=number + 1) from None
        number += 1
        yield {"row": number}, row


def _saved_dataset(folder: Path) -> Any:
    """A `save_to_disk` folder's dataset; of a DatasetDict, its `train` split or its only one."""
    datasets = require_datasets()
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:
        raise DataFormatError(f"{folder.name} is not a save_to_disk folder ({first_line(exc)})", field="data") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" in loaded:
            return loaded["train"]
        if len(splits) == 1:
            return loaded[splits[0]]
        raise DataFormatError(
            f"{folder.name} holds the splits {', '.join(splits)} and none is 'train'; save one split", field="data"
        )
    return loaded


def _saved_root(root: Path) -> Path:
    """The folder that `save_to_disk` wrote: the root of the archive or its one top folder."""
    markers = ("state.json", "dataset_dict.json")
    for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if any((candidate / m).is_file() for m in markers):
            return candidate
    raise DataFormatError(
        "the zip holds no save_to_disk folder (no state.json or dataset_dict.json at its root or in its top folder)",
        field="data",
    )


def _zip_rows(path: Path) -> Iterator[tuple[dict[str, int], object]]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataFormatError(f"{path.name} is not a zip file", field="data") from None
    with archive, tempfile.TemporaryDirectory(prefix="gisp-unzip-") as tmp:
        members = archive.infolist()
        total = sum(m.file_size for m in members)
        if total > min(MAX_UNZIPPED_BYTES, MAX_UNZIP_RATIO * max(path.stat().st_size, 1)):
            raise DataFormatError(f"{path.name} expands to {total} bytes, more than this reader allows", field="data")
        for member in members:
            name = PurePosixPath(member.filename)
            if name.is_absolute() or ".." in name.parts or member.filename.startswith("\\"):
                raise DataFormatError(f"{path.name} has an unsafe member name {member.filename!r}", field="data")
        archive.extractall(tmp)
        # the rows are memory-mapped from the extracted files: read them all before the folder goes
        yield from list(numbered(_saved_dataset(_saved_root(Path(tmp)))))
