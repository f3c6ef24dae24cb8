"""Resource ids: a prefix and a time-ordered hex body, so sorting by id sorts by creation
(cursor pagination relies on it) and ids never collide across processes."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{millis:012x}{secrets.token_hex(6)}"
