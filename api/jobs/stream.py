"""A job's events as Server-Sent Events: each event once, in `seq` order, with `id: <seq>` so a
reconnecting client resumes with `Last-Event-ID`; a comment line every heartbeat interval keeps
proxies from closing an idle stream; the stream ends once the job has finished and its last event
was sent. The database is polled in short read transactions off the event loop, so a stream never
holds a lock while it waits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from sse_starlette.sse import EventSourceResponse

from gisp_service.api.errors import ApiProblem
from gisp_service.api.jobs.schemas import EventOut
from gisp_service.api.schemas import SEQ_MAX
from gisp_service.core.runtime import Runtime
from gisp_service.db.repos import events as event_repo
from gisp_service.db.repos import jobs as job_repo

EVENT_STREAM = "text/event-stream"
BATCH = 500


def wants_stream(accept: str | None) -> bool:
    return EVENT_STREAM in (accept or "").lower()


def resume_point(after: int, last_event_id: str | None) -> int:
    """Where to start: after the `after` query or the Last-Event-ID header, whichever is later."""
    if last_event_id is None or not last_event_id.strip():
        return after
    if not last_event_id.strip().isdigit() or int(last_event_id) > SEQ_MAX:
        detail = f"Last-Event-ID must be the seq of an event (an integer up to {SEQ_MAX})"
        raise ApiProblem(422, detail, "Last-Event-ID")
    return max(after, int(last_event_id))


def _read(rt: Runtime, job_id: str, after: int) -> tuple[list[dict[str, Any]], bool]:
    with rt.sessions() as session:
        job = job_repo.get_any(session, job_id)
        rows, _ = event_repo.page(session, job_id, after, BATCH)
        events = [EventOut.model_validate(row).model_dump(mode="json") for row in rows]
        return events, job is None or job.status in job_repo.FINISHED


async def job_event_stream(rt: Runtime, job_id: str, after: int, poll: float) -> AsyncIterator[dict[str, Any]]:
    last = after
    while True:
        events, finished = await anyio.to_thread.run_sync(_read, rt, job_id, last)
        for event in events:
            last = event["seq"]
            yield {"id": str(event["seq"]), "event": event["type"], "data": json.dumps(event)}
        if finished and not events:
            return
        if not events:
            await anyio.sleep(poll)


def event_response(rt: Runtime, job_id: str, after: int) -> EventSourceResponse:
    """The streaming answer for a job the caller may see (checked before this is called)."""
    settings = rt.settings
    return EventSourceResponse(
        job_event_stream(rt, job_id, after, settings.events_poll_interval), ping=settings.events_heartbeat
    )
