#!/usr/bin/env python3
"""End-to-end demo of gisp-service on one machine, through the HTTP API only.

Starts `gisp serve` (SQLite + local broker + one worker) on a fresh data directory, uploads
TinyStories text, prunes stories260K to 20/30/40/50 % sparsity in one job, picks the least-pruned
checkpoint within a parameter budget, downloads it, loads it with plain transformers and
generates a story. The server is stopped at the end, whatever happens.

--llamacpp also downloads the checkpoint as a GGUF file (`?format=gguf`) and generates with
llama.cpp (needs the llamacpp extra). --model smollm2 prunes the real SmolLM2-135M from its GGUF
file instead (GGUF in, GGUF out: with --llamacpp the whole round trip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {"stories260K": "stories260K", "smollm2": "smollm2-135m-instruct-q4_1"}  # --model -> registered name
TARGETS = [0.2, 0.3, 0.4, 0.5]
GISP = [sys.executable, "-m", "gisp.cli"]  # the `gisp` command, from this interpreter whatever PATH says


def shared_dir() -> Path:
    return Path(os.environ.get("GISP_SHARED", REPO.parent / "shared")).expanduser().resolve()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="calibration text (default: $GISP_SHARED/data/tinystories/...)")
    p.add_argument("--data-dir", type=Path, help="service data directory (default: a fresh temp folder)")
    p.add_argument("--budget", type=float, default=0.75, help="max parameters as a fraction of the dense model")
    p.add_argument("--model", choices=list(MODELS), default="stories260K", help="base model (default: stories260K)")
    p.add_argument("--llamacpp", action="store_true", help="also download the GGUF and generate with llama.cpp")
    p.add_argument("--steps", type=int, default=None, help="schedule steps (default: 8; smollm2: 4)")
    p.add_argument("--samples", type=int, default=None, help="calibration windows (default: 32; smollm2: 16)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--keep", action="store_true", help="keep a temp data directory (and the download) at exit")
    p.add_argument("--stay", action="store_true", help="keep the server (and its dashboard) running until Ctrl-C")
    return p.parse_args()


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gisp(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([*GISP, *args], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"demo: `gisp {' '.join(args)}` failed:\n{done.stderr.strip()}")
    return done.stdout


def wait_ready(client, server: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"demo: gisp serve exited with {server.returncode}:\n{tail(log)}")
        if client.ready():
            return
        time.sleep(0.3)
    raise SystemExit(f"demo: the server was not ready within {timeout:.0f} s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def stop(server: subprocess.Popen) -> None:
    """Stop `gisp serve` and everything it started (its own process group).

    SIGINT, not SIGTERM: uvicorn re-raises the signal it caught once it has shut down, and only
    SIGINT (as KeyboardInterrupt) lets `gisp serve` run its cleanup, which stops the worker.
    Whatever is still alive in the group afterwards gets SIGTERM, then SIGKILL.
    """
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=45)
        except subprocess.TimeoutExpired:
            server.terminate()
            server.wait(timeout=15)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        print(f"demo: processes of the server were left behind; sent {sig.name} to its group", file=sys.stderr)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.killpg(server.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def hf_folder(model_dir: Path) -> Path:
    """The Hugging Face folder of a base model: itself, or the cached conversion of its GGUF file."""
    from gisp.gguf_input import converted_folder, gguf_file_of

    gguf_file = gguf_file_of(model_dir)
    return converted_folder(gguf_file) if gguf_file is not None else model_dir


def dense_parameters(model_dir: Path) -> int:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(str(hf_folder(model_dir)))
    return sum(p.numel() for p in model.parameters())  # tied embeddings counted once, as the service does


def generate_llamacpp(gguf_file: Path, prompt: str) -> str:
    """Greedy text from llama.cpp (2 threads) on the downloaded GGUF file."""
    from gisp.eval.llamacpp import LlamaCpp

    with LlamaCpp(gguf_file, n_ctx=256, logits=False) as llm:
        return prompt + llm.greedy(prompt, max_tokens=60)


def generate(folder: Path, prompt: str) -> str:
    """A seeded sample (same seed for every model, so the texts are comparable)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    torch.manual_seed(0)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=60, do_sample=True, temperature=0.8, top_k=40, pad_token_id=tokenizer.eos_token_id
        )
    return tokenizer.decode(out[0], skip_special_tokens=True)


def main() -> int:
    args = parse_args()
    from gisp_service.client import GispAPIError, GispClient
    from gisp_service.client.display import JobProgressBar, checkpoint_table

    if args.llamacpp:
        from gisp.eval.llamacpp import available

        if not available():
            print("demo: --llamacpp needs llama-cpp-python: pip install -e '.[llamacpp]'", file=sys.stderr)
            return 2
    small = args.model == "stories260K"
    args.steps = args.steps or (8 if small else 4)
    args.samples = args.samples or (32 if small else 16)
    prompt = "Once upon a time" if small else "Once upon a time, there was a little"
    model_name = MODELS[args.model]
    data = args.data or shared_dir() / "data" / "tinystories" / "tinystories_val.txt"
    model_dir = shared_dir() / "models" / model_name
    for what, path in (("calibration text", data), ("model", model_dir)):
        if not path.exists():
            print(
                f"demo: the {what} {path} is missing. Put the shared assets beside the repo (../shared) "
                f"or set GISP_SHARED=/path/to/shared (or pass --data FILE for the text).",
                file=sys.stderr,
            )
            return 2
    started = time.perf_counter()
    temp = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="gisp-demo-")) if temp else args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("GISP_DATABASE_URL", "GISP_BROKER_URL", "GISP_AUTH")}
    env.update(GISP_DATA_DIR=str(data_dir), GISP_MODEL_ROOTS=str(model_dir.parent), GISP_SHARED=str(shared_dir()))

    say(f"service data directory: {data_dir} (SQLite database, SQLite broker, artifacts)")
    key = gisp("admin", "create-key", "--tenant", "demo", env=env).strip().splitlines()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "serve.log"
    say(f"starting `gisp serve --port {port}` (API + one worker); log: {log}")
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [*GISP, "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a hung server can be killed as a whole
        )
    out_dir = data_dir / "downloads"
    try:
        with GispClient(url, key) as client:
            wait_ready(client, server, log)
            print(f"ready after {time.perf_counter() - started:.1f} s")
            ui_key = gisp("admin", "create-key", "--tenant", "demo", env=env).strip().splitlines()[-1]
            say(f"the dashboard: {url}/ui")
            print(f"sign in with this API key (shown once, for tenant demo): {ui_key}")

            say(f"uploading {data}")
            dataset = client.upload_dataset(data, name="tinystories-val")
            print(
                f"{dataset['id']}: {dataset['format']}, {dataset['kind']}, {dataset['records']:,} records, "
                f"{dataset['bytes']:,} bytes, sha256 {dataset['sha256'][:16]}…"
            )

            say(f"submitting: prune {model_name} to {', '.join(f'{t:.0%}' for t in TARGETS)} sparsity in one job")
            job = client.create_job(
                idempotency_key=str(uuid.uuid4()),
                model=model_name,
                dataset_id=dataset["id"],
                objective="perplexity",
                targets=TARGETS,
                steps=args.steps,
                samples=args.samples,
                seq_len=args.seq_len,
            )
            bar = JobProgressBar(job["id"])
            job = client.wait(job["id"], poll=0.5, timeout=900, on_update=bar.update)
            bar.close()
            if job["status"] != "succeeded":
                error = job.get("error") or {}
                print(f"demo: job {job['id']} {job['status']}: {error.get('code')}: {error.get('message')}")
                return 1
            events = client.events(job["id"])
            print(f"{job['id']} succeeded: {len(events)} events, {job['checkpoint_count']} checkpoints")

            say("checkpoints (nested: each is a subnetwork of the one above)")
            checkpoints = client.checkpoints(job["id"])
            print(checkpoint_table(checkpoints))

            dense = dense_parameters(model_dir)
            budget = int(dense * args.budget)
            say(f"selecting: at most {budget:,} parameters ({args.budget:.0%} of the dense {dense:,})")
            try:
                chosen = client.select(job["id"], max_params=budget)
            except GispAPIError as exc:
                print(f"demo: nothing fits: {exc}")
                return 1
            print(
                f"{chosen['id']}: target {chosen['target_sparsity']:.0%}, {chosen['parameter_count']:,} parameters, "
                f"{chosen['bytes']:,} bytes, metrics {chosen['metrics']}"
            )

            folder = out_dir / chosen["id"]
            t = time.perf_counter()
            client.download(chosen["id"], folder)
            files = sorted(p.name for p in folder.iterdir())
            print(f"downloaded, sha256 verified, extracted in {time.perf_counter() - t:.1f} s: {folder}")
            print("files: " + ", ".join(files))
            if args.llamacpp:
                gguf_file = out_dir / f"{chosen['id']}.gguf"
                t = time.perf_counter()
                client.download(chosen["id"], gguf_file, format="gguf")
                size = gguf_file.stat().st_size
                print(f"GGUF (f16, built on first request) downloaded, sha256 verified, {size:,} bytes, "
                      f"{time.perf_counter() - t:.1f} s: {gguf_file}")  # fmt: skip

        say("loading with transformers (AutoModelForCausalLM, trust_remote_code=True) and generating")
        print(f"pruned ({chosen['parameter_count']:,} parameters): {generate(folder, prompt)}")
        print(f"dense  ({dense:,} parameters): {generate(hf_folder(model_dir), prompt)}")
        if args.llamacpp:
            say("running the GGUF in llama.cpp (llama-cpp-python, greedy)")
            print(f"pruned, llama.cpp: {generate_llamacpp(gguf_file, prompt)}")
        if args.stay:
            say(f"the dashboard stays at {url}/ui until Ctrl-C")
            try:
                server.wait()
            except KeyboardInterrupt:
                pass
    finally:
        say("stopping the server")
        stop(server)
        print(f"server exited with {server.returncode}")
        if temp and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
            print(f"removed {data_dir} (pass --keep to keep it and the download)")
    print(f"\ndemo wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
