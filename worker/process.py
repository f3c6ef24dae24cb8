"""What one worker process owns and shares with no other: the runtime its tasks use (database
pool, store, Celery app); and the flag that says the worker is shutting down (shared with the
prefork children, which must hear it).

A pool must never cross a fork. In the prefork pool each task runs in a child forked from the
Celery parent, whose reconciler thread has its own runtime; a child that used the parent's
connections interleaved its statements with the parent's on the same sockets
(`DuplicatePreparedStatement` on PostgreSQL). So the child builds its own runtime after the fork
(`worker_process_init` calls `after_fork`), and a runtime used in another process than the one
that built it is replaced, never reused.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
from collections.abc import Callable

from gisp_service.core.runtime import Runtime


def worker_id() -> str:
    """This process, as jobs record who runs them: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ProcessRuntime:
    """The runtime of the tasks of this process, built on first use in the process that uses it."""

    def __init__(self, build: Callable[[], Runtime]) -> None:
        self._build = build
        self._runtime: Runtime | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> Runtime:
        with self._lock:
            if self._runtime is None or self._pid != os.getpid():
                self._drop_inherited()
                self._runtime, self._pid = self._build(), os.getpid()
            return self._runtime

    def after_fork(self) -> None:
        """In a new child: forget what the parent built (leaving its sockets to it), build afresh."""
        self._lock = threading.Lock()  # a lock held by another thread at fork time stays held in the child
        with self._lock:
            self._drop_inherited()
            self._runtime, self._pid = self._build(), os.getpid()

    def close(self) -> None:
        with self._lock:
            if self._runtime is not None and self._pid == os.getpid():
                self._runtime.close()
            self._runtime = None

    def _drop_inherited(self) -> None:
        if self._runtime is not None and self._pid != os.getpid():
            self._runtime.forget_inherited()
        self._runtime = None


# Set when the worker begins a warm shutdown (SIGTERM, Ctrl-C): the running job stops at its next
# step and goes back to the queue, to be resumed from its trajectory. Celery tells only the main
# process (`worker_shutting_down`); a multiprocessing Event, made before the prefork children are
# forked, is shared with them, so the job running in a child hands itself back too.
SHUTDOWN_REQUESTED = multiprocessing.get_context("fork").Event()
