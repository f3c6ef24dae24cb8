"""Records streamed from a `datasets` source: a Hugging Face hub dataset (`org/name`, with a
config and split), or a local folder that mirrors one (the same `load_dataset` call, so a closed
network serves its mirrors exactly as the hub would be served). Streaming reads only the rows
taken, up to a cap: a large hub dataset is never downloaded whole."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from itertools import islice
from typing import Any

from gisp.data.columns import Columns, RecordKind
from gisp.data.records import Record, records_of
from gisp.data.tabular import first_line, numbered, require_datasets
from gisp.errors import DataFormatError


def hub_rows(
    source: str, config: str | None, split: str, rows: int, revision: str | None = None
) -> Iterator[tuple[dict[str, int], object]]:
    datasets = require_datasets()
    with tempfile.TemporaryDirectory(prefix="gisp-hub-") as cache:
        try:
            table: Any = datasets.load_dataset(
                source, config, split=split, streaming=True, revision=revision, cache_dir=cache
            )
        except Exception as exc:  # unknown dataset, config or split, no network: the library's own message
            raise DataFormatError(f"dataset {source!r} cannot be opened: {first_line(exc)}", field="hub") from None
        yield from islice(numbered(table), rows)


def read_hub_records(
    source: str,
    config: str | None = None,
    split: str = "train",
    rows: int = 1000,
    columns: Columns | None = None,
    revision: str | None = None,
    label: str | None = None,
) -> tuple[RecordKind, list[Record]]:
    """The first `rows` records of a hub dataset (or of a local mirror folder given as `source`)."""
    if rows < 1:
        raise DataFormatError("rows must be at least 1", field="rows")
    return records_of(hub_rows(source, config, split, rows, revision), columns or Columns(), label or source)
