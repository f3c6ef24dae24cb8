"""Python client and CLI commands for the gisp service's HTTP API (see docs/client.md)."""

from gisp_service.client.errors import ChecksumMismatchError, GispAPIError, GispClientError, UnsafeArchiveError
from gisp_service.client.http import GispClient

__all__ = ["ChecksumMismatchError", "GispAPIError", "GispClient", "GispClientError", "UnsafeArchiveError"]
