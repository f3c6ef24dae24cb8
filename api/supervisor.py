"""`gisp serve`'s worker processes, restarted when one dies (out of memory, a crashing kernel, a
SIGKILL): the embedded service has no Docker or systemd to bring its worker back, and without one
no further job would run. The reconciler of the restarted worker then re-queues the dead one's job
(or fails it with `worker_lost` once it has taken GISP_MAX_ATTEMPTS workers down)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time

log = logging.getLogger("gisp.serve")
RESTART_DELAY = 1.0  # seconds between a worker's death and its restart (no busy loop on a crash at start)


class Supervisor(threading.Thread):
    def __init__(self, commands: list[list[str]]) -> None:
        super().__init__(daemon=True, name="gisp-supervisor")
        self.commands = commands
        self.processes = [self._start(c) for c in commands]
        self.stopping = threading.Event()

    @staticmethod
    def _start(command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(command, env=os.environ.copy())

    def run(self) -> None:
        while not self.stopping.wait(RESTART_DELAY):
            for i, process in enumerate(self.processes):
                if process.poll() is not None and not self.stopping.is_set():
                    log.warning("worker %d exited with %s; restarting it", process.pid, process.returncode)
                    self.processes[i] = self._start(self.commands[i])

    def stop(self, grace: float = 30.0) -> None:
        """Warm shutdown: the current step finishes and the job goes back to the queue."""
        self.stopping.set()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
