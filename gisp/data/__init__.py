"""Calibration and evaluation data: reading files into records, and records into examples."""

from gisp.data.columns import Columns
from gisp.data.examples import ChoiceExample, Example, SequenceExample, build_examples
from gisp.data.records import (
    ChoiceRecord,
    CompletionRecord,
    DatasetInfo,
    Record,
    TextRecord,
    inspect_dataset,
    read_records,
    write_records,
)

__all__ = [
    "ChoiceExample",
    "ChoiceRecord",
    "Columns",
    "CompletionRecord",
    "DatasetInfo",
    "Example",
    "Record",
    "SequenceExample",
    "TextRecord",
    "build_examples",
    "inspect_dataset",
    "read_records",
    "write_records",
]
