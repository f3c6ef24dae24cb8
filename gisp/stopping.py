"""Stopping a run inside its long phases, not only between steps.

The caller's observer answers `should_stop()`; the engine asks it between the items of every loop
whose length the data or the settings chose (records tokenized, calibration batches scored, steps),
so a cancel, a shutdown or a time limit is heard within one item. The observer must answer
cheaply (the service's reads the database at most once a second)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar, overload

from gisp.errors import PruningStopped

T = TypeVar("T")
StopCheck = Callable[[], bool]


def check_stop(should_stop: StopCheck | None, where: str) -> None:
    """Raise PruningStopped when the caller asks to stop."""
    if should_stop is not None and should_stop():
        raise PruningStopped(f"stopped during {where}")


class Checked(Sequence[T]):
    """`items` as a read-only sequence whose iteration asks `should_stop` before each item."""

    def __init__(self, items: Sequence[T], should_stop: StopCheck | None, where: str) -> None:
        self.items, self.should_stop, self.where = items, should_stop, where

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...
    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        return self.items[index]

    def __iter__(self) -> Iterator[T]:
        for item in self.items:
            check_stop(self.should_stop, self.where)
            yield item


def checked(items: Sequence[T], should_stop: StopCheck | None, where: str) -> Sequence[T]:
    return items if should_stop is None else Checked(items, should_stop, where)
