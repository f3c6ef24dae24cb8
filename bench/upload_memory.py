"""Memory of the API process while it receives a large upload (issue 13). Prints figures; asserts nothing.

  python -m bench.upload_memory --mb 200                               # this checkout
  python -m bench.upload_memory --mb 200 --source /tmp/main-checkout  # and another checkout, side by side

For each checkout: a fresh `gisp serve --no-worker` (GISP_AUTH=off, SQLite), its peak resident
memory (VmHWM) read before and after one upload of an `--mb` MB text file sent as multipart with
httpx (streamed from disk), the time the upload took, and the answer's status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.load import REPO, code_paths, commit
from tests.live import free_port, stop


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _text_file(path: Path, mb: int) -> None:
    paragraph = ("Once upon a time, a little robot found a red ball in the park. " * 8 + "\n\n").encode()
    with path.open("wb") as handle:
        for _ in range(mb * 1024 * 1024 // len(paragraph)):
            handle.write(paragraph)


def measure(source: Path | None, data: Path, mb: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        env_paths, _ = code_paths(source, Path(scratch))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GISP_")}
        env.update(env_paths, GISP_DATA_DIR=str(Path(scratch) / "data"), GISP_AUTH="off")
        env["GISP_MAX_UPLOAD_BYTES"] = str((mb + 50) * 1024 * 1024)
        port = free_port()
        log = (Path(scratch) / "serve.log").open("wb")
        process = subprocess.Popen(
            ["gisp", "serve", "--no-worker", "--port", str(port), "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            pid = process.pid  # the `gisp` launcher execs Python: uvicorn runs in this process
            before = _status(pid, "VmHWM")
            started = time.perf_counter()
            with data.open("rb") as handle:
                response = httpx.post(f"{url}/v1/datasets", files={"file": ("big.txt", handle)}, timeout=1800)
            seconds = time.perf_counter() - started
            after = _status(pid, "VmHWM")
            return {"status": response.status_code, "before": before, "after": after, "seconds": seconds}
        finally:
            stop(process)
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--source", type=Path, default=None, help="also measure another checkout's service code")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "big.txt"
        _text_file(data, args.mb)
        print(f"upload: {data.stat().st_size / 2**20:.0f} MiB of text")
        for source in ([args.source.resolve()] if args.source else []) + [None]:
            figures = measure(source, data, args.mb)
            name = f"{source or REPO} ({commit(source or REPO)})"
            print(
                f"{name}: status {figures['status']}, peak RSS {figures['before'] / 2**20:.0f} MiB before, "
                f"{figures['after'] / 2**20:.0f} MiB after (+{(figures['after'] - figures['before']) / 2**20:.0f} MiB),"
                f" {figures['seconds']:.1f} s"
            )


if __name__ == "__main__":
    main()
