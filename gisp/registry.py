"""One registry type for every pluggable piece of the engine (adapters, objectives, importance
estimators, methods, ...): register a class under a name, list the names, get one by name with
an error that names the field and the choices.

Third parties add pieces without forking through an entry-point group per registry (e.g.
`gisp.methods`): each entry point names a module or an object whose import registers itself;
groups are loaded once, on the first lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from gisp.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger("gisp")


class Registry(Generic[T]):
    """Named classes of one kind. `what` is how errors call a value ("method"), `field` the
    setting it comes from; `group` the entry-point group third-party plugins use."""

    def __init__(self, what: str, field: str | None = None, group: str | None = None) -> None:
        self.what, self.field, self.group = what, field or what, group
        self._items: dict[str, T] = {}
        self._plugins_loaded = group is None

    def register(self, item: T, names: Iterable[str] | None = None) -> T:
        """Register `item` under `names` (default: its `name` attribute); usable as a decorator."""
        for name in names if names is not None else [getattr(item, "name")]:  # noqa: B009
            if not name:
                raise ValueError(f"a {self.what} needs a non-empty name")
            self._items[name] = item
        return item

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in entry_points(group=self.group or ""):
            try:
                entry.load()  # importing the plugin registers it
            except Exception:  # a broken plugin must not take the built-in pieces down with it
                log.exception("could not load %s plugin %r from %s", self.what, entry.name, entry.value)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def get(self, name: str) -> T:
        self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.what} {name!r}; choose one of {', '.join(self.names())}", field=self.field
            ) from None

    def create(self, name: str) -> Any:
        """An instance of the class registered as `name` (for registries of classes)."""
        return self.get(name)()  # type: ignore[operator]

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._items
