"""Which webhook URLs are acceptable: http(s), a host, no credentials; and, unless the operator
allows private ones (GISP_WEBHOOK_ALLOW_PRIVATE=1), only globally routable addresses, so a
tenant cannot make the service call its own loopback, link-local or private network (SSRF).
The check runs at registration and again before every attempt, on the addresses the name
resolves to then."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL = 2000


class RefusedURL(ValueError):
    pass


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL; RefusedURL says what is wrong otherwise."""
    if len(url) > MAX_URL:
        raise RefusedURL(f"the URL is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedURL(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedURL("the URL must start with http:// or https://")
    if not parts.hostname:
        raise RefusedURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedURL("the URL must not carry credentials")
    if parts.fragment:
        raise RefusedURL("the URL must not have a #fragment")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check(url: str, allow_private: bool, resolve_required: bool) -> None:
    """Raise RefusedURL for an unacceptable URL. A name that does not resolve is refused only when
    `resolve_required` (before a delivery; at registration it may resolve later)."""
    _, host, port = parse(url)
    if allow_private:
        return
    try:
        addresses = _addresses(host, port)
    except (OSError, UnicodeError):
        if resolve_required:
            raise RefusedURL(f"the host {host!r} does not resolve") from None
        return
    for address in addresses:
        if not _public(address):
            raise RefusedURL(
                f"the host {host!r} is (or resolves to) {address}, a loopback, link-local or private address; "
                "the operator may allow those with GISP_WEBHOOK_ALLOW_PRIVATE=1"
            )
