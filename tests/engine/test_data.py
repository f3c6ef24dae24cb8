"""Calibration data: formats, errors that name the line and field, objectives, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gisp.data import ChoiceExample, SequenceExample, build_examples, inspect_dataset, read_records
from gisp.data.examples import IGNORE
from gisp.errors import DataFormatError
from gisp.objectives import get_objective
from gisp.objectives.base import pad_sequences
from tests.engine.tiny import tiny_model, tokenizer


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def words(n: int, start: int = 4) -> str:
    return " ".join(f"w{4 + (start + i) % 60}" for i in range(n))


def test_text_windows_are_seeded_and_disjoint_from_heldout(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text(words(400))
    kind, records = read_records(path)
    calib, held = build_examples(tokenizer(), records, "lm", samples=5, seq_len=16, seed=3, heldout=4)
    again, _ = build_examples(tokenizer(), records, "lm", samples=5, seq_len=16, seed=3, heldout=4)
    other, _ = build_examples(tokenizer(), records, "lm", samples=5, seq_len=16, seed=4, heldout=4)
    assert kind == "text" and len(calib) == 5 and len(held) == 4
    assert all(len(e.input_ids) == 16 for e in calib + held)
    assert calib == again and calib != other
    assert not {tuple(e.input_ids) for e in calib} & {tuple(e.input_ids) for e in held}


def test_completion_labels_only_the_completion(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "w5 w6 w7", "completion": " w8 w9"}])
    _, records = read_records(path)
    (example,), _ = build_examples(tokenizer(), records, "completion", samples=1, seq_len=32, seed=0)
    assert isinstance(example, SequenceExample)
    scored = [t for t in example.labels if t != IGNORE]
    assert tokenizer().convert_ids_to_tokens(scored) == ["w8", "w9"]


def test_choice_items_become_one_sequence_per_choice(tmp_path: Path) -> None:
    rows = [{"question": "w5 w6", "choices": ["w7", "w8 w9", "w10"], "answer": 1}]
    _, records = read_records(write_jsonl(tmp_path / "m.jsonl", rows))
    (item,), _ = build_examples(tokenizer(), records, "choice", samples=1, seq_len=32, seed=0)
    assert isinstance(item, ChoiceExample) and item.answer == 1 and len(item.choices) == 3
    assert tokenizer().convert_ids_to_tokens([t for t in item.choices[1].labels if t != IGNORE]) == ["w8", "w9"]


@pytest.mark.parametrize(
    ("rows", "line", "field"),
    [
        ([{"text": "a"}, {"txt": "b"}], 2, "text"),
        ([{"prompt": "a"}], 1, "completion"),
        ([{"question": "q", "choices": ["a", "b"]}], 1, "answer"),
        ([{"question": "q", "choices": ["a", "b"], "answer": 5}], 1, "answer"),
        ([{"context": "q", "choices": "ab", "answer": 0}], 1, "choices"),
        ([{"choices": ["a", "b"], "answer": 0}], 1, "context"),
        ([{"text": "a"}, "{not json"], 2, None),
    ],
)
def test_bad_records_name_line_and_field(tmp_path: Path, rows: list, line: int, field: str | None) -> None:
    with pytest.raises(DataFormatError) as info:
        read_records(write_jsonl(tmp_path / "bad.jsonl", rows))
    assert info.value.line == line and info.value.field == field
    assert f"line {line}" in info.value.message


def test_objective_rejects_data_of_the_wrong_kind(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "w5 w6"}])
    kind, _ = read_records(path)
    with pytest.raises(DataFormatError) as info:
        get_objective("margin").check(kind)
    assert info.value.line == 1 and info.value.field == "choices"
    with pytest.raises(DataFormatError, match="prompt"):
        get_objective("completion").check(kind)
    get_objective("perplexity").check(kind)


def test_unsupported_file_type_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_text("a,b")
    with pytest.raises(DataFormatError, match=".xlsx"):
        read_records(tmp_path / "x.xlsx")
    with pytest.raises(DataFormatError, match="does not exist"):
        read_records(tmp_path / "missing.txt")


def test_inspect_reports_kind_count_and_sha(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "a", "completion": "b"}] * 3)
    info = inspect_dataset(path)
    assert (info.format, info.kind, info.records, info.bytes) == ("jsonl", "completion", 3, path.stat().st_size)
    assert len(info.sha256) == 64


def test_margin_loss_is_correct_minus_mean_of_wrong() -> None:
    loaded = tiny_model("llama-gqa")
    item = ChoiceExample(
        [
            SequenceExample([1, 5, 6, 7], [IGNORE, IGNORE, 6, 7]),
            SequenceExample([1, 5, 9], [IGNORE, IGNORE, 9]),
            SequenceExample([1, 5, 11, 12], [IGNORE, IGNORE, 11, 12]),
        ],
        answer=0,
    )
    objective = get_objective("margin")
    (batch,) = objective.batches([item], 4, 0)
    with torch.no_grad():
        margin = objective.sample_losses(loaded.model, batch)
        nll = get_objective("completion").sample_losses(loaded.model, pad_sequences(item.choices, 0))
    assert margin.shape == (1,)
    assert torch.allclose(margin[0], nll[0] - (nll[1] + nll[2]) / 2, atol=1e-6)


def test_a_text_file_is_checked_in_pieces_as_read_records_would(tmp_path) -> None:
    from gisp.data.records import check_text_file

    good = tmp_path / "good.txt"
    good.write_bytes(b"a" * (1 << 20) + "é".encode())  # a character split across the 1 MiB pieces
    check_text_file(good)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a" * (1 << 20) + b"\xff")
    with pytest.raises(DataFormatError, match=f"bad.txt is not UTF-8 text .* at byte {1 << 20}"):
        check_text_file(bad)
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b"  \n\n ")
    with pytest.raises(DataFormatError, match="blank.txt is empty"):
        check_text_file(blank)
