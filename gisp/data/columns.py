"""Which columns of a table (or fields of a .jsonl line) hold a record's parts.

A mapping names one record kind's columns: `text_field` (text), `prompt_field`/`completion_field`
(prompt/completion) or `question_field`/`choices_field`/`answer_field` (multiple choice); a part
left out keeps its .jsonl name. No mapping reads the .jsonl names and takes the kind from the
first record, as the .jsonl reader always did."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

from gisp.errors import DataFormatError

RecordKind = Literal["text", "completion", "choice"]

KIND_FIELDS: dict[RecordKind, tuple[str, ...]] = {
    "text": ("text_field",),
    "completion": ("prompt_field", "completion_field"),
    "choice": ("question_field", "choices_field", "answer_field"),
}
DEFAULT_NAMES = {
    "text_field": "text",
    "prompt_field": "prompt",
    "completion_field": "completion",
    "question_field": "question",
    "choices_field": "choices",
    "answer_field": "answer",
}
MAX_NAME = 200


@dataclass(frozen=True)
class Columns:
    text_field: str | None = None
    prompt_field: str | None = None
    completion_field: str | None = None
    question_field: str | None = None
    choices_field: str | None = None
    answer_field: str | None = None

    def __post_init__(self) -> None:
        for name, value in self.given().items():
            if not value.strip() or len(value) > MAX_NAME:
                raise DataFormatError(f"{name} must name a column (1 to {MAX_NAME} characters)", field=name)
        kinds = [kind for kind, names in KIND_FIELDS.items() if any(n in self.given() for n in names)]
        if len(kinds) > 1:
            mixed = ", ".join(n for n in self.given())
            raise DataFormatError(
                f"the column mapping mixes record kinds ({mixed}); give text_field, or prompt_field/completion_field, "
                "or question_field/choices_field/answer_field",
                field=next(iter(self.given())),
            )

    @classmethod
    def from_dict(cls, mapping: dict[str, str | None] | None) -> Columns:
        mapping = {k: v for k, v in (mapping or {}).items() if v is not None}
        unknown = sorted(set(mapping) - set(DEFAULT_NAMES))
        if unknown:
            raise DataFormatError(
                f"unknown column mapping {', '.join(unknown)}; use {', '.join(DEFAULT_NAMES)}", field=unknown[0]
            )
        return cls(**mapping)

    def given(self) -> dict[str, str]:
        """The mapping as the user gave it (no defaults)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def kind(self) -> RecordKind | None:
        """The record kind the mapping picks; None when no mapping was given."""
        return next((kind for kind, names in KIND_FIELDS.items() if any(n in self.given() for n in names)), None)

    def _name(self, field: str) -> str:
        value = getattr(self, field)
        return value if value is not None else DEFAULT_NAMES[field]

    @property
    def text(self) -> str:
        return self._name("text_field")

    @property
    def prompt(self) -> str:
        return self._name("prompt_field")

    @property
    def completion(self) -> str:
        return self._name("completion_field")

    @property
    def question(self) -> str:
        return self._name("question_field")

    @property
    def choices(self) -> str:
        return self._name("choices_field")

    @property
    def answer(self) -> str:
        return self._name("answer_field")


DEFAULT_COLUMNS = Columns()
COLUMN_FIELDS = tuple(f.name for f in fields(Columns))
