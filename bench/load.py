"""Load on the service's HTTP API while a job runs (issue 12, item 10). Prints figures; asserts nothing.

  python bench/load.py --mode embedded     # `gisp serve`: API + worker, SQLite database and broker
  python bench/load.py --mode production   # PostgreSQL + Redis; the API (the image's uvicorn command,
                                           # 2 processes) and the prefork worker as separate processes
  python bench/load.py --mode both --source /tmp/main-checkout   # the service code of another checkout

Two phases, while a background keeper makes sure a pruning job is always running (the worker
writes a step, a heartbeat and an event every fraction of a second):
  (a) poll: N clients each ask for the running job's status once a second (the way pipelines
      poll): p50, p99, max latency, errors;
  (b) ceiling: N clients back to back: requests/s, p50, p99, errors;
and during both a probe asks /healthz every 0.25 s (its worst latency), and after (b) the script
times how long /healthz and GET /v1/jobs take to answer again. The client is httpx's async client
on loopback only; every loop is bounded in time, and the processes are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GISP_SHARED", REPO.parent / "shared")).resolve()
MODELS = SHARED / "models"
TEXT = SHARED / "data" / "tinystories" / "tinystories_val.txt"
SERVICE_FOLDERS = ("api", "worker", "db", "core", "client")
# a job of some tens of seconds on stories260K; the keeper submits the next one when it ends
JOB = {
    "model": "stories260K",
    "objective": "perplexity",
    "targets": [0.1, 0.5],
    "steps": 60,
    "samples": 16,
    "seq_len": 128,
}
HOST = "127.0.0.1"


# ------------------------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def code_paths(source: Path | None, scratch: Path) -> tuple[dict[str, str], Path]:
    """PYTHONPATH and PATH entries so that the servers run `source`'s code (default: this checkout).

    `source` gets a folder that maps its engine and service folders to `gisp` and `gisp_service.*`
    (as setup.py does), and `celery`, `gisp`, `uvicorn` commands that run this interpreter."""
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    for command, module in (("celery", "celery"), ("gisp", "gisp.cli"), ("uvicorn", "uvicorn")):
        script = bin_dir / command
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
        script.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    root = source or REPO
    if source is not None:
        tree = scratch / "src"
        (tree / "gisp_service").mkdir(parents=True)
        (tree / "gisp_service" / "__init__.py").write_text("")
        (tree / "gisp").symlink_to(source / "gisp")
        for folder in SERVICE_FOLDERS:
            (tree / "gisp_service" / folder).symlink_to(source / folder)
        env["PYTHONPATH"] = str(tree)
    return env, root


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def start(name: str, command: list[str], env: dict[str, str], cwd: Path, logs: Path) -> Process:
    log = logs / f"{name}.log"
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Process(name, popen, log)


def wait_http(url: str, processes: list[Process], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in processes:
            if p.popen.poll() is not None:
                sys.exit(f"{p.name} exited early:\n{p.log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit(f"{url} did not answer in {timeout:.0f}s")


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gisp.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        sys.exit(f"gisp {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"gisp_bench_{secrets.token_hex(4)}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Service:
    base_url: str
    key: str
    processes: list[Process]

    def log_counts(self) -> dict[str, int]:
        text = "".join(p.log.read_text(errors="replace") for p in self.processes)
        return {"database is locked": text.count("database is locked"), "Traceback": text.count("Traceback")}


@contextmanager
def service(mode: str, source: Path | None, args: argparse.Namespace) -> Iterator[Service]:
    with tempfile.TemporaryDirectory(prefix=f"gisp-load-{mode}-") as scratch_name:
        scratch = Path(scratch_name)
        paths, root = code_paths(source, scratch)
        port = free_port()
        env = {
            **os.environ,
            **paths,
            "GISP_DATA_DIR": str(scratch / "data"),
            "GISP_MODEL_ROOTS": str(MODELS),
            "GISP_AUTH": "on",
            "GISP_TORCH_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_VERBOSITY": "error",
        }
        processes: list[Process] = []
        with ExitStack() as stack:
            if mode == "production":
                env["GISP_DATABASE_URL"] = stack.enter_context(postgres_database(args.database_url))
                env["GISP_BROKER_URL"] = args.broker_url
                env["GISP_QUEUE"] = f"prune-bench-{secrets.token_hex(3)}"
                env["HOSTNAME"] = f"bench-{secrets.token_hex(3)}"
                env["PORT"] = str(port)
                run_cli(["db", "upgrade"], env, root)  # what compose's one-shot `migrate` service runs
                processes.append(
                    start("worker", ["sh", str(root / "docker" / "entrypoint-worker.sh")], env, root, scratch)
                )
                processes.append(
                    start("api", ["sh", str(root / "docker" / "entrypoint-api.sh"), "--host", HOST], env, root, scratch)
                )
            else:
                command = [sys.executable, "-m", "gisp.cli", "serve", "--host", HOST, "--port", str(port)]
                processes.append(start("serve", command, env, root, scratch))
            try:
                base_url = f"http://{HOST}:{port}"
                wait_http(f"{base_url}/healthz", processes)
                key = run_cli(["admin", "create-key", "--tenant", "bench"], env, root)
                yield Service(base_url, key, processes)
            finally:
                for p in reversed(processes):
                    p.stop()
                if mode == "production":
                    flush_queue(args.broker_url, env["GISP_QUEUE"])
                args.logs[mode] = {p.name: p.log.read_text(errors="replace") for p in processes}


def flush_queue(broker_url: str, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(broker_url)
    client.delete(queue, f"_kombu.binding.{queue}", *client.scan_iter(f"{queue}\x06\x16*"))
    client.close()


# ------------------------------------------------------------------------------------------ load
@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def record(self, seconds: float, error: str | None) -> None:
        self.latencies.append(seconds)
        if error is not None:
            self.errors += 1
            self.error_kinds[error] = self.error_kinds.get(error, 0) + 1

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed_get(client: httpx.AsyncClient, url: str, sample: Sample, headers: dict | None = None) -> None:
    started = time.perf_counter()
    error = None
    try:
        response = await client.get(url, headers=headers)
        if response.status_code != 200:
            error = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    sample.record(time.perf_counter() - started, error)


class Keeper:
    """Keeps one pruning job running: submits the next when the current one ends."""

    def __init__(self, client: httpx.AsyncClient, headers: dict, dataset_id: str) -> None:
        self.client, self.headers, self.dataset_id = client, headers, dataset_id
        self.job_id = ""
        self.submitted = 0
        self.steps_seen = 0
        self._last_step = 0

    async def submit(self) -> None:
        body = {**JOB, "dataset_id": self.dataset_id, "seed": self.submitted}
        response = await self.client.post("/v1/jobs", json=body, headers=self.headers)
        response.raise_for_status()
        self.job_id, self.submitted, self._last_step = response.json()["id"], self.submitted + 1, 0

    async def wait_running(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = (await self.client.get(f"/v1/jobs/{self.job_id}", headers=self.headers)).json()
            if job["status"] == "running" and job["progress"]["step"] >= 1:
                return
            await asyncio.sleep(0.5)
        sys.exit("the background job never started running")

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            try:
                job = (await self.client.get(f"/v1/jobs/{self.job_id}", headers=self.headers, timeout=30)).json()
                step = job["progress"]["step"]
                self.steps_seen += max(0, step - self._last_step)
                self._last_step = step
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    await self.submit()
            except httpx.HTTPError:
                pass  # the load phases count errors; the keeper only keeps a job going
            await asyncio.sleep(1.0)


async def probe_health(client: httpx.AsyncClient, until: float, sample: Sample) -> None:
    while time.monotonic() < until:
        await timed_get(client, "/healthz", sample)
        await asyncio.sleep(0.25)


async def poll_phase(client: httpx.AsyncClient, keeper: Keeper, clients: int, seconds: float) -> Sample:
    sample = Sample()
    until = time.monotonic() + seconds

    async def one_client(offset: float) -> None:
        next_at = time.monotonic() + offset
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if time.monotonic() >= until:
                return
            await timed_get(client, f"/v1/jobs/{keeper.job_id}", sample, keeper.headers)
            next_at += 1.0

    await asyncio.gather(*(one_client(i / clients) for i in range(clients)))
    return sample


async def ceiling_phase(
    client: httpx.AsyncClient, keeper: Keeper, clients: int, seconds: float
) -> tuple[Sample, float]:
    sample = Sample()
    started = time.monotonic()
    until = started + seconds

    async def one_client() -> None:
        while time.monotonic() < until:
            await timed_get(client, f"/v1/jobs/{keeper.job_id}", sample, keeper.headers)

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return sample, time.monotonic() - started


async def time_to_answer(base_url: str, path: str, headers: dict, limit: float) -> float:
    """Seconds until `path` answers 200 (each try with a 2 s timeout), at most `limit`."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while time.monotonic() - started < limit:
            try:
                if (await client.get(path, headers=headers)).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    return float("inf")


async def measure(svc: Service, args: argparse.Namespace) -> dict:
    headers = {"Authorization": f"Bearer {svc.key}"}
    # keep-alive shorter than uvicorn's 5 s, so the client never reuses a connection the server is
    # closing at that moment (that race reads as a ReadError on the client, whatever the server does)
    limits = httpx.Limits(
        max_connections=args.clients + 10, max_keepalive_connections=args.clients + 10, keepalive_expiry=3.0
    )
    async with (
        httpx.AsyncClient(base_url=svc.base_url, timeout=args.timeout, limits=limits) as client,
        httpx.AsyncClient(base_url=svc.base_url, timeout=args.timeout) as health_client,
        httpx.AsyncClient(base_url=svc.base_url, timeout=60) as keeper_client,
    ):
        dataset = (
            await keeper_client.post("/v1/datasets", files={"file": ("t.txt", TEXT.read_bytes())}, headers=headers)
        ).json()
        keeper = Keeper(keeper_client, headers, dataset["id"])
        await keeper.submit()
        await keeper.wait_running()
        result: dict = {"load_before": os.getloadavg()}
        for phase in ("poll", "ceiling"):
            seconds = args.poll_seconds if phase == "poll" else args.ceiling_seconds
            until = time.monotonic() + seconds
            health = Sample()
            steps_before = keeper.steps_seen
            keeper_task = asyncio.create_task(keeper.run(until))
            health_task = asyncio.create_task(probe_health(health_client, until, health))
            if phase == "poll":
                sample, elapsed = await poll_phase(client, keeper, args.clients, seconds), seconds
            else:
                sample, elapsed = await ceiling_phase(client, keeper, args.clients, seconds)
            await asyncio.gather(keeper_task, health_task)
            result[phase] = {
                "requests": len(sample.latencies),
                "rps": len(sample.latencies) / elapsed,
                "p50_ms": 1000 * sample.quantile(0.50),
                "p99_ms": 1000 * sample.quantile(0.99),
                "max_ms": 1000 * max(sample.latencies, default=float("nan")),
                "errors": sample.errors,
                "error_kinds": sample.error_kinds,
                "healthz_max_ms": 1000 * max(health.latencies, default=float("nan")),
                "healthz_errors": health.errors,
                "job_steps": keeper.steps_seen - steps_before,
            }
        result["after_ceiling_s"] = {
            path: await time_to_answer(svc.base_url, path, headers, args.recovery_limit)
            for path in ("/healthz", "/v1/jobs")
        }
        result["load_after"] = os.getloadavg()
    result["log"] = svc.log_counts()
    return result


# ------------------------------------------------------------------------------------------ report
def report(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [
        f"clients {args.clients}; poll {args.poll_seconds:.0f} s at 1 request/s per client; ceiling "
        f"{args.ceiling_seconds:.0f} s back to back; client timeout {args.timeout:.0f} s; code "
        f"{args.source or REPO} ({commit(args.source or REPO)})",
        "",
        "| mode | phase | requests | req/s | p50 ms | p99 ms | max ms | errors | /healthz max ms | job steps "
        "| load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in results.items():
        for phase in ("poll", "ceiling"):
            p = r[phase]
            errors = f"{p['errors']}" + (
                f" ({', '.join(f'{k}: {v}' for k, v in p['error_kinds'].items())})" if p["errors"] else ""
            )
            lines.append(
                f"| {mode} | {phase} | {p['requests']} | {p['rps']:.0f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | "
                f"{p['max_ms']:.0f} | {errors} | {p['healthz_max_ms']:.0f} | {p['job_steps']} | "
                f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f} |"
            )
    lines.append("")
    for mode, r in results.items():
        after = ", ".join(
            f"{path} {seconds:.2f} s" if seconds != float("inf") else f"{path} none within {args.recovery_limit:.0f} s"
            for path, seconds in r["after_ceiling_s"].items()
        )
        log = ", ".join(f"{k!r} ×{v}" for k, v in r["log"].items())
        lines.append(f"- {mode}: after the ceiling phase, first answer of {after}; server logs: {log}")
    return "\n".join(lines)


def commit(root: Path) -> str:
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True)
    return (done.stdout.strip() or "?") + ("+changes" if dirty.stdout.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "production", "both"], default="both")
    parser.add_argument("--source", type=Path, default=None, help="run another checkout's service code")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--poll-seconds", type=float, default=60)
    parser.add_argument("--ceiling-seconds", type=float, default=20)
    parser.add_argument("--timeout", type=float, default=10, help="per request; a timeout counts as an error")
    parser.add_argument("--recovery-limit", type=float, default=300, help="longest wait for answers after load")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("GISP_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--broker-url", default=os.environ.get("GISP_BENCH_BROKER_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--json", type=Path, default=None, help="write the raw results here")
    parser.add_argument("--logs", type=Path, default=None, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    if not (MODELS / "stories260K").is_dir() or not TEXT.is_file():
        sys.exit(f"needs {MODELS / 'stories260K'} and {TEXT} (set GISP_SHARED)")
    for host in (httpx.URL(args.database_url.replace("+psycopg", "")).host, httpx.URL(args.broker_url).host):
        if host not in ("127.0.0.1", "localhost", "::1"):
            sys.exit(f"loopback only: {host} is not this machine")
    args.source = args.source.resolve() if args.source else None
    log_dir, args.logs = args.logs, {}
    modes = ["embedded", "production"] if args.mode == "both" else [args.mode]
    results = {}
    for mode in modes:
        with service(mode, args.source, args) as svc:
            results[mode] = asyncio.run(measure(svc, args))
    text = report(results, args)
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items() if k != "logs"}, "results": results},
                indent=2,
                default=str,
            )
        )
    if log_dir:
        log_dir.mkdir(parents=True, exist_ok=True)
        for mode, logs in args.logs.items():
            for name, content in logs.items():
                (log_dir / f"{mode}-{name}.log").write_text(content)


if __name__ == "__main__":
    main()
