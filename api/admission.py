"""Admission: at most N requests inside the app at once; the others wait their turn.

Sync handlers run in AnyIO's thread pool and each holds a database connection while it runs. If
more requests start than there are threads or connections, the ones holding a connection wait
for a thread while the threads wait for a connection, until the pool times out (the wedge of
issue 12, item 10). So the app admits N requests at a time, sizes the thread pool and the
connection pool above N (api/app.py), and a burst queues here, in the event loop, in order of
arrival and without a timeout. A request leaves the queue's count when its response starts, so a
long download holds no slot. Exempt paths (/healthz) never wait.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class AdmissionLimit:
    def __init__(self, app: ASGIApp, limit: int, exempt: frozenset[str] = frozenset()) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt
        self._semaphore: anyio.Semaphore | None = None
        self._loop: object = None

    def _current_semaphore(self) -> anyio.Semaphore:
        loop = anyio.lowlevel.current_token()  # one per event loop (tests run several); a new token
        if self._semaphore is None or self._loop != loop:  # object each call, equal for one loop
            self._semaphore, self._loop = anyio.Semaphore(self.limit), loop
        return self._semaphore

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        semaphore = self._current_semaphore()
        await semaphore.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                semaphore.release()

        async def send_and_release(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            release()
