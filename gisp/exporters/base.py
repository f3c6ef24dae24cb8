"""The exporter interface: one small class per deployment format, registered by name.

Every exporter converts a checkpoint *folder* (what `gisp prune` writes, what the service's tar
holds, or a dense Hugging Face Llama-family folder) into its format. A trajectory is turned into
such a folder first (`gisp.exporters.source`), so a format never deals with pruning state.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from gisp.errors import GispError
from gisp.registry import Registry


class ExportError(GispError):
    """A checkpoint that this format cannot represent, or a missing optional dependency."""

    code = "export_failed"


class Exporter(ABC):
    """Writes one format. `name` is the registry key (and `gisp export-<name>`); `suffix` is the
    output's file suffix ("" for a folder); `extra` the pip extra that provides the modules named in
    `requires`."""

    name: str = ""
    suffix: str = ""
    extra: str | None = None
    requires: tuple[str, ...] = ()
    help: str = ""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Format-specific command-line options (none by default)."""
        return None

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        return {}

    @abstractmethod
    def write(self, folder: Path, out: Path, **options: Any) -> dict[str, Any]:
        """Convert checkpoint folder `folder` into `out` atomically; return a summary of what was
        written (at least its "path")."""


EXPORTERS: Registry[type[Exporter]] = Registry("exporter", field="format", group="gisp.exporters")
register_exporter = EXPORTERS.register
exporter_names = EXPORTERS.names
get_exporter = EXPORTERS.create
