"""The `gisp` command. Engine commands (`prune`, `eval`) live here; other packages add theirs
through the `gisp.commands` entry-point group (a function that takes the subparsers object), so
the engine never imports the service."""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

from gisp.errors import GispError


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_prune_arguments(parser: argparse.ArgumentParser) -> None:
    """Pruning options shared by `gisp prune` and the service client's `gisp submit`."""
    parser.add_argument("--objective", default="perplexity", help="perplexity | completion | margin")
    parser.add_argument("--targets", type=_floats, required=True, help="sparsities to record, e.g. 0.2,0.4")
    parser.add_argument("--steps", type=int, default=16, help="schedule steps up to the largest target")
    parser.add_argument("--method", default="gisp")
    parser.add_argument("--samples", type=int, default=64, help="calibration samples")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per calibration window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")


def _prune_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune a model locally and export every target")
    p.add_argument("model", help="hub id or local model folder")
    p.add_argument("--data", required=True, help="calibration file (.txt or .jsonl)")
    p.add_argument("--out", required=True, help="output folder")
    add_prune_arguments(p)
    p.add_argument("--importance", default="taylor")
    p.add_argument("--normalization", default="param", help="param | reference")
    p.add_argument("--protect-layers", type=_ints, default=[], help="layer indices kept whole, e.g. 0,31")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--heldout", type=int, default=16, help="calibration-file samples held out for metrics")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--gradient-checkpointing", action="store_true", help="recompute activations when scoring (long sequences)"
    )
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.set_defaults(func=_run_prune)


def _run_prune(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gisp.config import PruneSettings
    from gisp.export import export_all
    from gisp.pruner import PruneObserver, StepReport
    from gisp.run import run
    from gisp.trajectory import Trajectory

    settings = PruneSettings(
        targets=args.targets,
        objective=args.objective,
        method=args.method,
        steps=args.steps,
        samples=args.samples,
        seq_len=args.seq_len,
        seed=args.seed,
        importance=args.importance,
        normalization=args.normalization,
        protect_layers=args.protect_layers,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        heldout=args.heldout,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    out = Path(args.out)
    if not Path(args.data).is_file():
        raise GispError(f"data file {args.data!r} does not exist", field="data")

    class Progress(PruneObserver):
        def __init__(self) -> None:
            self.bar: tqdm | None = None

        def on_step(self, report: StepReport, trajectory: Trajectory) -> None:
            if self.bar is None:
                self.bar = tqdm(total=report.total_steps, desc="pruning", unit="step", file=sys.stderr)
            self.bar.update(1)
            self.bar.set_postfix(sparsity=f"{report.sparsity:.3f}", loss=f"{report.loss or float('nan'):.3f}")
            trajectory.save(out / "trajectory.json")

    started = time.perf_counter()
    progress = Progress()
    trajectory, prepared = run(args.model, args.data, settings, observer=progress)
    if progress.bar is not None:
        progress.bar.close()
    del prepared
    paths = export_all(trajectory, out)
    trajectory.save(out / "trajectory.json")
    wall = time.perf_counter() - started
    rows = [
        {
            "target": r.target,
            "sparsity": round(r.sparsity, 4),
            "parameters": r.parameter_count,
            "flops_per_token": r.flops_per_token,
            "metrics": r.metrics,
            "path": str(path),
        }
        for r, path in zip(sorted(trajectory.checkpoints, key=lambda r: r.target), paths, strict=True)
    ]
    if args.json:
        print(
            json.dumps(
                {"trajectory": str(out / "trajectory.json"), "wall_seconds": wall, "checkpoints": rows}, indent=1
            )
        )
    else:
        print(f"{'target':>7} {'sparsity':>9} {'params':>10} {'ppl/acc':>10}  path")
        for row in rows:
            metric = row["metrics"].get("perplexity", row["metrics"].get("accuracy", float("nan")))
            print(
                f"{row['target']:>7.2f} {row['sparsity']:>9.4f} {row['parameters']:>10,} {metric:>10.3f}  {row['path']}"
            )
        print(f"wall time {wall:.1f} s; trajectory: {out / 'trajectory.json'}")
    return 0


def _eval_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="perplexity, parameters and bytes of a checkpoint folder or base model")
    p.add_argument("path", help="checkpoint folder, local model folder or hub id")
    p.add_argument("--data", required=True, help="held-out text (.txt or .jsonl)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--max-windows", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from gisp.evaluation import file_perplexity, folder_bytes, parameter_count
    from gisp.export import load_pruned
    from gisp.models import load_model

    if args.seq_len < 2:
        raise GispError("seq_len must be at least 2", field="seq_len")
    if not Path(args.data).is_file():
        raise GispError(f"data file {args.data!r} does not exist", field="data")
    path = Path(args.path)
    config = path / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type", "").startswith("gisp_"):
        model = load_pruned(path)
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=True)
    else:
        loaded = load_model(args.path)
        model, tokenizer = loaded.model, loaded.tokenizer
    result = file_perplexity(model, tokenizer, args.data, args.seq_len, args.max_windows)
    summary = {
        "path": args.path,
        "perplexity": result.perplexity,
        "tokens": result.tokens,
        "parameters": parameter_count(model),
        "bytes": folder_bytes(path) if path.is_dir() else None,
        "seq_len": args.seq_len,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>11}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gisp", description="Global Iterative Structured Pruning")
    sub = parser.add_subparsers(dest="command", required=True)
    _prune_command(sub)
    _eval_command(sub)
    for entry in entry_points(group="gisp.commands"):
        try:
            register = entry.load()
        except ImportError:  # the service/client extras are not installed
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GispError as exc:
        print(f"gisp: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
