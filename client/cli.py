"""`gisp submit|status|checkpoints|download|cancel`: the service client's commands, plugged into the
`gisp` CLI through the `gisp.commands` entry point. Failures print one line on stderr, no traceback."""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from gisp.cli import EXIT_FAILURE, require_extra
from gisp_service.client import DEFAULT_URL
from gisp_service.client.display import JobProgressBar, checkpoint_table, job_summary
from gisp_service.client.errors import GispClientError

if TYPE_CHECKING:
    from gisp_service.client.http import GispClient

CLIENT_MODULES = ("httpx", "pydantic")

EXIT_ERROR = EXIT_FAILURE  # the request could not be made or the server refused it (2 is for usage errors)
EXIT_JOB_FAILED = EXIT_FAILURE  # the job ran and ended failed or cancelled

_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def count(text: str) -> int:
    """A positive budget such as 195000, 195k, 1.5M, 2Gi (decimal k/M/G, binary Ki/Mi/Gi)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]i?)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a number such as 195000, 195k or 1.5M, got {text!r}")
    value = float(match.group(1)) * _SUFFIXES[(match.group(2) or "").lower()]
    if value < 1:
        raise argparse.ArgumentTypeError(f"a budget must be at least 1, got {text!r}")
    return int(value)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("service")
    group.add_argument("--url", default=os.environ.get("GISP_URL", DEFAULT_URL), help="service URL (env GISP_URL)")
    group.add_argument("--api-key", default=os.environ.get("GISP_API_KEY"), help="API key (env GISP_API_KEY)")
    return common


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn client and transport failures into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        require_extra("client", *CLIENT_MODULES)
        import httpx

        try:
            return fn(args)
        except GispClientError as exc:
            print(f"gisp: error: {exc}", file=sys.stderr)
        except httpx.HTTPError as exc:
            print(f"gisp: error: {args.url}: {exc!r}", file=sys.stderr)
        except OSError as exc:
            print(f"gisp: error: {exc}", file=sys.stderr)
        return EXIT_ERROR

    return run


def _client(args: argparse.Namespace) -> GispClient:
    from gisp_service.client.http import GispClient

    return GispClient(args.url, args.api_key)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the client commands to the `gisp` parser."""
    from gisp.cli import DATA_HELP, add_column_arguments, add_setting_arguments

    common = _common()

    p = subparsers.add_parser("submit", parents=[common], help="upload data and submit a pruning job to the service")
    p.add_argument("model", help="hub id (org/name) or the name of a model under the server's model roots")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--eval-data", help="separate evaluation file for the checkpoints' metrics")
    add_column_arguments(p)
    p.set_defaults(setting_names=add_setting_arguments(p, service=True))
    p.add_argument("--idempotency-key", help="resubmitting with the same key returns the same job (default: random)")
    p.add_argument(
        "--wait",
        action="store_true",
        help="show progress until the job ends (following its event stream); non-zero exit if it fails",
    )
    p.add_argument(
        "--poll",
        type=float,
        default=1.0,
        help="seconds between polls where no event stream arrives (a proxy strips it)",
    )
    p.set_defaults(func=_guarded(_submit))

    p = subparsers.add_parser("status", parents=[common], help="a service job's status and progress")
    p.add_argument("job")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guarded(_status))

    p = subparsers.add_parser(
        "checkpoints", parents=[common], help="a service job's checkpoints as a table, and whether they are nested"
    )
    p.add_argument("job")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guarded(_checkpoints))

    p = subparsers.add_parser(
        "download", parents=[common], help="download the least-pruned checkpoint of a job that fits a budget"
    )
    p.add_argument("job")
    budget = p.add_argument_group("budget (at least one; all given bounds must hold)")
    budget.add_argument("--max-params", type=count, help="parameters, e.g. 195000 or 1.5M")
    budget.add_argument("--max-bytes", type=count, help="weight bytes, e.g. 800k or 2Gi")
    budget.add_argument("--max-flops", type=count, help="FLOPs per token")
    p.add_argument(
        "--out", required=True, help="folder to create (absent or empty); with --format gguf, the file to write"
    )
    p.add_argument(
        "--format",
        choices=["hf", "gguf"],
        default="hf",
        help="hf: the Hugging Face folder (default); gguf: one GGUF file (f16) that llama.cpp runs",
    )
    p.set_defaults(func=_guarded(_download))

    p = subparsers.add_parser("cancel", parents=[common], help="cancel a queued or running service job")
    p.add_argument("job")
    p.set_defaults(func=_guarded(_cancel))


def _submit(args: argparse.Namespace) -> int:
    from gisp.cli import setting_values

    for flag, path in (("--data", args.data), ("--eval-data", args.eval_data)):
        if path is not None and not Path(path).is_file():
            raise GispClientError(f"{flag} {path!r} is not a file")
    with _client(args) as client:
        from gisp.data.columns import COLUMN_FIELDS

        columns = {name: getattr(args, name) for name in COLUMN_FIELDS if getattr(args, name, None)}
        dataset = client.upload_dataset(args.data, columns=columns)
        print(
            f"uploaded {args.data}: {dataset['id']} ({dataset['kind']}, {dataset['records']} records)", file=sys.stderr
        )
        eval_id = None
        if args.eval_data:
            eval_id = client.upload_dataset(args.eval_data)["id"]
        job = client.create_job(
            idempotency_key=args.idempotency_key or str(uuid.uuid4()),
            model=args.model,
            dataset_id=dataset["id"],
            eval_dataset_id=eval_id,
            **setting_values(args, args.setting_names),
        )
        print(job["id"], flush=True)
        if not args.wait:
            return 0
        return _wait(client, job["id"], args.poll)


def _wait(client: GispClient, job_id: str, poll: float) -> int:
    bar = JobProgressBar(job_id)
    try:
        job = client.wait(job_id, poll=poll, on_update=bar.update)
    except KeyboardInterrupt:
        bar.close()
        print(f"stopped waiting; job {job_id} goes on (gisp cancel {job_id} stops it)", file=sys.stderr)
        return 130
    bar.close()
    if job["status"] == "succeeded":
        print(f"{job_id} succeeded with {job.get('checkpoint_count', 0)} checkpoints", file=sys.stderr)
        return 0
    error = job.get("error") or {}
    reason = f": {error.get('code')}: {error.get('message')}" if error else ""
    print(f"gisp: job {job_id} {job['status']}{reason}", file=sys.stderr)
    return EXIT_JOB_FAILED


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.get_job(args.job)
    print(json.dumps(job, indent=1) if args.json else job_summary(job))
    return 0


def _checkpoints(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = client.checkpoints(args.job)
    # --json: the API's page shape, the whole list in `data` and the family's `nested` beside it
    print(json.dumps({"data": rows, "nested": rows.nested}, indent=1) if args.json else checkpoint_table(rows))
    return 0


def _download(args: argparse.Namespace) -> int:
    if args.max_params is None and args.max_bytes is None and args.max_flops is None:
        raise GispClientError("give at least one budget: --max-params, --max-bytes or --max-flops")
    out = Path(args.out)
    if args.format == "gguf" and out.exists():
        raise GispClientError(f"--out {args.out!r} exists")
    if args.format == "hf" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GispClientError(f"--out {args.out!r} exists and is not empty")
    with _client(args) as client:
        chosen = client.select(
            args.job, max_params=args.max_params, max_bytes=args.max_bytes, max_flops_per_token=args.max_flops
        )
        print(
            f"selected {chosen['id']}: target {chosen['target_sparsity']:g}, sparsity {chosen['sparsity']:.4f}, "
            f"{chosen['parameter_count']:,} parameters, {chosen['bytes']:,} bytes",
            file=sys.stderr,
        )
        with tqdm(desc="download", unit="B", unit_scale=True, file=sys.stderr, dynamic_ncols=True) as bar:

            def progress(received: int, total: int | None) -> None:
                if total and bar.total != total:
                    bar.total = total
                bar.update(received - bar.n)

            path = client.download(chosen["id"], out, format=args.format, on_progress=progress)
    print(path)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel_job(args.job)
    print(f"{job['id']}: {job['status']}")
    return 0
