"""A real `gisp serve` process (uvicorn + its Celery worker, SQLite database and broker) in its own
process group, for tests that talk HTTP to the service as a client would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

GISP = [sys.executable, "-m", "gisp.cli"]  # the `gisp` command of this interpreter


@dataclass
class LiveServer:
    url: str
    key: str
    data_dir: Path
    process: subprocess.Popen

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def log(self) -> str:
        return (self.data_dir / "serve.log").read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(process: subprocess.Popen, grace: float = 40.0) -> None:
    """SIGINT lets `gisp serve` stop its worker; whatever is left in its process group is then
    terminated, then killed, polling the group instead of sleeping a fixed time."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(process.pid):
            return
        os.killpg(process.pid, sig)
        deadline = time.monotonic() + 3
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


@contextmanager
def live_server(
    data_dir: Path, model_root: Path, *serve_args: str, tenant: str = "live", env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """`env` adds settings (GISP_* variables) to the server's environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GISP_") or k == "GISP_SHARED"}
    base.update(GISP_DATA_DIR=str(data_dir), GISP_MODEL_ROOTS=str(model_root), HF_HUB_OFFLINE="1")
    # hub ids are accepted unchecked (there is no hub here), so a job naming a missing one reaches
    # the worker and fails there, which several tests need
    base.update(GISP_ALLOWED_MODELS="local,*", GISP_HUB_URL="", **(env or {}))
    env = base
    created = subprocess.run(
        [*GISP, "admin", "create-key", "--tenant", tenant], env=env, capture_output=True, text=True, timeout=120
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log = (data_dir / "serve.log").open("wb")
    process = subprocess.Popen(
        [*GISP, "serve", "--port", str(port), "--log-level", "warning", *serve_args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", key, data_dir, process)
    try:
        deadline = time.monotonic() + 150
        while True:
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, server.log()[-3000:]
            assert time.monotonic() < deadline, "gisp serve was not ready in time"
            time.sleep(0.3)
        yield server
    finally:
        stop(process)
        log.close()
