"""Python client and CLI commands for the gisp service's HTTP API (see docs/client.md).

Names load lazily, so that the `gisp` CLI can list the client's commands (and say which extra to
install) where httpx is missing."""

from importlib import import_module
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"

_EXPORTS = {
    "GispClient": "gisp_service.client.http",
    "ChecksumMismatchError": "gisp_service.client.errors",
    "GispAPIError": "gisp_service.client.errors",
    "GispClientError": "gisp_service.client.errors",
    "UnsafeArchiveError": "gisp_service.client.errors",
}
__all__ = ["DEFAULT_URL", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
