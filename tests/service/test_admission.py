"""Admission (api/admission.py): at most N requests inside the app at once, the rest wait their
turn and are all answered; exempt paths never wait."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gisp_service.api.admission import AdmissionLimit


class Recorder:
    """An ASGI app that takes a while per request and records how many it holds at once."""

    def __init__(self) -> None:
        self.inside = self.most = 0

    async def __call__(self, scope, receive, send) -> None:
        self.inside += 1
        self.most = max(self.most, self.inside)
        await asyncio.sleep(0.02)
        self.inside -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _burst(app, paths: list[str]) -> list[int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(*(client.get(path) for path in paths))
    return [r.status_code for r in responses]


@pytest.mark.parametrize("limit", [1, 3])
def test_a_burst_queues_and_is_answered(limit):
    inner = Recorder()
    statuses = asyncio.run(_burst(AdmissionLimit(inner, limit), ["/v1/jobs"] * 20))
    assert statuses == [200] * 20 and inner.most == limit


def test_exempt_paths_skip_the_queue():
    inner = Recorder()
    app = AdmissionLimit(inner, 1, exempt=frozenset({"/healthz"}))
    assert asyncio.run(_burst(app, ["/healthz"] * 10)) == [200] * 10 and inner.most == 10
