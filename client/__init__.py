"""Python client and CLI commands for the gisp service's HTTP API (see docs/client.md)."""

from client.errors import ChecksumMismatchError, GispAPIError, GispClientError, UnsafeArchiveError
from client.http import GispClient

__all__ = ["ChecksumMismatchError", "GispAPIError", "GispClient", "GispClientError", "UnsafeArchiveError"]
