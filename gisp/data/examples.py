"""Turning records into token examples: fixed windows of a text stream, prompt/completion pairs,
or one sequence per choice. Selection is a seeded shuffle, so the same seed picks the same
examples, and examples not picked for calibration are available as a held-out set."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from transformers import PreTrainedTokenizerBase

from gisp.data.records import ChoiceRecord, CompletionRecord, Record, TextRecord
from gisp.errors import DataFormatError

IGNORE = -100
Mode = Literal["lm", "completion", "choice"]


@dataclass(frozen=True)
class SequenceExample:
    """Token ids and aligned labels (labels[i] is scored as the prediction at position i-1)."""

    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class ChoiceExample:
    """One sequence per choice, with only the choice tokens labelled."""

    choices: list[SequenceExample]
    answer: int


Example = SequenceExample | ChoiceExample


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _bos(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def text_stream(tokenizer: PreTrainedTokenizerBase, records: list[Record]) -> list[int]:
    """All text of the records as one token stream, BOS before each record."""
    stream: list[int] = []
    for record in records:
        if isinstance(record, TextRecord):
            text = record.text
        elif isinstance(record, CompletionRecord):
            text = record.prompt + record.completion
        else:
            text = _join(record.context, record.choices[record.answer])
        stream += _bos(tokenizer) + _encode(tokenizer, text)
    return stream


def _join(context: str, continuation: str) -> str:
    if not context or context[-1].isspace() or continuation[:1].isspace():
        return context + continuation
    return context + " " + continuation


def _pair(tokenizer: PreTrainedTokenizerBase, prompt: str, full: str, seq_len: int) -> SequenceExample:
    """Encode `full`, labelling only the tokens after `prompt`; keep the last seq_len tokens."""
    ids = _bos(tokenizer) + _encode(tokenizer, full)
    prompt_ids = _bos(tokenizer) + _encode(tokenizer, prompt)
    n_prompt = len(prompt_ids) if ids[: len(prompt_ids)] == prompt_ids else len(prompt_ids) - 1
    n_prompt = max(1, min(n_prompt, len(ids) - 1))
    labels = [IGNORE] * n_prompt + ids[n_prompt:]
    return SequenceExample(ids[-seq_len:], labels[-seq_len:])


def _record_example(tokenizer: PreTrainedTokenizerBase, record: Record, mode: Mode, seq_len: int) -> Example:
    if mode == "choice":
        assert isinstance(record, ChoiceRecord)
        choices = [_pair(tokenizer, record.context, _join(record.context, c), seq_len) for c in record.choices]
        return ChoiceExample(choices, record.answer)
    if isinstance(record, ChoiceRecord):
        prompt, full = record.context, _join(record.context, record.choices[record.answer])
    elif isinstance(record, CompletionRecord):
        prompt, full = record.prompt, record.prompt + record.completion
    else:
        raise DataFormatError("text records have no prompt/completion split", field="prompt")
    example = _pair(tokenizer, prompt, full, seq_len)
    if mode == "lm":
        example = SequenceExample(example.input_ids, list(example.input_ids))
    return example


def build_examples(
    tokenizer: PreTrainedTokenizerBase,
    records: list[Record],
    mode: Mode,
    samples: int,
    seq_len: int,
    seed: int,
    heldout: int = 0,
) -> tuple[list[Example], list[Example]]:
    """Pick `samples` calibration examples and up to `heldout` further ones, seeded.

    Text records become non-overlapping windows of exactly `seq_len` tokens; other records one
    example each. When the data has fewer examples than asked for, calibration takes what there
    is (at least one) and the held-out set what is left.
    """
    rng = random.Random(seed)
    if mode == "lm" and all(isinstance(r, TextRecord) for r in records):
        stream = text_stream(tokenizer, records)
        count = len(stream) // seq_len
        if count == 0:
            raise DataFormatError(
                f"the data has {len(stream)} tokens, fewer than one window of seq_len={seq_len}", field="seq_len"
            )
        order = list(range(count))
        rng.shuffle(order)
        windows = [stream[i * seq_len : (i + 1) * seq_len] for i in order]
        pool: list[Example] = [SequenceExample(w, list(w)) for w in windows]
    else:
        order = list(range(len(records)))
        rng.shuffle(order)
        pool = [_record_example(tokenizer, records[i], mode, seq_len) for i in order[: samples + heldout]]
    calibration = pool[: max(1, min(samples, len(pool) - min(heldout, len(pool) // 2)))]
    rest = pool[len(calibration) : len(calibration) + heldout]
    return calibration, rest
