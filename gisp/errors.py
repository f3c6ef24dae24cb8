"""Engine errors. Each carries a stable `code` so that callers (the CLI, the service) can report
the cause without parsing messages."""

from __future__ import annotations


class GispError(Exception):
    """Base class; `code` names the failure class, `field` the offending input where there is one."""

    code = "engine_error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConfigError(GispError):
    code = "invalid_config"


class ModelNotFoundError(GispError):
    code = "model_not_found"


class UnsupportedArchitectureError(GispError):
    code = "unsupported_architecture"


class DataFormatError(GispError):
    """A calibration or evaluation file that cannot be read for the chosen objective."""

    code = "invalid_data"

    def __init__(self, message: str, line: int | None = None, field: str | None = None, row: int | None = None) -> None:
        # a text file's errors name its line; a table's (.csv, .parquet, a hub dataset), its row (1-based)
        where = f"line {line}: " if line is not None else f"row {row}: " if row is not None else ""
        super().__init__(where + message, field=field)
        self.line, self.row = line, row


class PruningStopped(GispError):
    """Raised inside the pruning loop when the caller asked it to stop between steps."""

    code = "cancelled"


class ReconstructionError(GispError):
    """A reconstruction solve that cannot produce finite weights; the message names the module."""

    code = "reconstruction_failed"
