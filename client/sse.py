"""Reading a Server-Sent Events stream (the job events endpoint with `Accept: text/event-stream`):
the spec's line format, with `id`, `event` and `data` fields and `:` comment lines (heartbeats)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    """One dispatched event; a heartbeat comment comes through as a Message with `event == ""` and no data,
    so a reader can check its deadline while the stream is idle."""

    event: str
    data: str
    id: str | None


HEARTBEAT = Message("", "", None)


def messages(lines: Iterable[str]) -> Iterator[Message]:
    event, data, last_id = "", [], None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield Message(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            yield HEARTBEAT
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
    if data:
        yield Message(event or "message", "\n".join(data), last_id)
