"""Readers for multiple-choice sets into `ChoiceRecord`s (context, choices, answer index).

Prompt conventions (see shared/ASSETS.md), so that every set is scored as log P(choice | context):
- `jsonl`: the engine's own `{"context" | "question", "choices", "answer"}` records;
- `arc`: HF `allenai/ai2_arc` rows → "Question: {q}\\nAnswer:" + " " + choice text;
- `hellaswag`: llama.cpp's 6-line layout (context, gold index, 4 endings), plain or .bz2;
- `copa`: the original XML → premise without its final period + " because" (cause) or
  " therefore" (effect), + " " + alternative with a lower-cased first letter.
"""

from __future__ import annotations

import bz2
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from gisp.data import ChoiceRecord, read_records
from gisp.errors import DataFormatError

MC_FORMATS = ("jsonl", "arc", "hellaswag", "copa")


def detect_mc_format(path: str | Path) -> str:
    """Guess the format from the file name and, for .jsonl, the first record's fields."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".xml"):
        return "copa"
    if name.endswith((".bz2", ".txt")):
        return "hellaswag"
    if name.endswith(".jsonl"):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    try:
                        first = json.loads(line)
                    except json.JSONDecodeError:
                        break
                    return "arc" if isinstance(first, dict) and "answerKey" in first else "jsonl"
        return "jsonl"
    raise DataFormatError(f"cannot tell the multiple-choice format of {path.name}; pass --mc-format", field="mc_format")


def _jsonl(path: Path) -> list[ChoiceRecord]:
    kind, records = read_records(path)
    if kind != "choice":
        raise DataFormatError(
            f"{path.name} holds {kind!r} records, not multiple-choice ones (missing field 'choices')", field="choices"
        )
    return [r for r in records if isinstance(r, ChoiceRecord)]


def _arc(path: Path) -> list[ChoiceRecord]:
    items = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                texts, labels = list(row["choices"]["text"]), list(row["choices"]["label"])
                answer = labels.index(row["answerKey"])
                question = row["question"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DataFormatError(f"not an ARC row ({type(exc).__name__}: {exc})", line=number) from None
            items.append(ChoiceRecord(f"Question: {question}\nAnswer:", tuple(texts), answer))
    return items


def _hellaswag(path: Path) -> list[ChoiceRecord]:
    opener = bz2.open if path.name.lower().endswith(".bz2") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise DataFormatError(f"{path.name} has {len(lines)} lines, not a multiple of 6", field="mc")
    items = []
    for start in range(0, len(lines), 6):
        context, label, *endings = lines[start : start + 6]
        try:
            answer = int(label)
        except ValueError:
            raise DataFormatError(f"gold label {label!r} is not an integer", line=start + 2) from None
        if not 0 <= answer < len(endings):
            raise DataFormatError(f"gold label {answer} is out of range", line=start + 2)
        items.append(ChoiceRecord(context, tuple(endings), answer))
    return items


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _copa(path: Path) -> list[ChoiceRecord]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataFormatError(f"{path.name} is not valid XML ({exc})", field="mc") from None
    items = []
    for item in root.iter("item"):
        premise = (item.findtext("p") or "").strip()
        connector = " because" if item.get("asks-for") == "cause" else " therefore"
        context = (premise[:-1] if premise.endswith(".") else premise) + connector
        choices = tuple(_lower_first((item.findtext(tag) or "").strip()) for tag in ("a1", "a2"))
        answer = int(item.get("most-plausible-alternative", "0")) - 1
        if answer not in (0, 1):
            raise DataFormatError(f"item {item.get('id')} has no valid most-plausible-alternative", field="mc")
        items.append(ChoiceRecord(context, choices, answer))
    return items


_READERS = {"jsonl": _jsonl, "arc": _arc, "hellaswag": _hellaswag, "copa": _copa}


def read_mc(path: str | Path, fmt: str = "auto", limit: int | None = None) -> list[ChoiceRecord]:
    """The items of a multiple-choice file (the first `limit` of them, when given)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"multiple-choice file {str(path)!r} does not exist", field="mc")
    fmt = detect_mc_format(path) if fmt == "auto" else fmt
    if fmt not in _READERS:
        raise DataFormatError(f"unknown multiple-choice format {fmt!r}; use {', '.join(MC_FORMATS)}", field="mc_format")
    items = _READERS[fmt](path)
    return items[:limit] if limit is not None else items
