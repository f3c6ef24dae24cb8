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
    parser.add_argument("--importance", default=None, help="fisher | taylor (default: taylor for margin, else fisher)")


def _prune_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune a model locally and export every target")
    p.add_argument("model", help="hub id or local model folder")
    p.add_argument("--data", required=True, help="calibration file (.txt or .jsonl)")
    p.add_argument("--out", required=True, help="output folder")
    add_prune_arguments(p)
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
    from gisp.methods import get_method
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
            total = settings.steps if get_method(settings.method).iterative else 1
            self.bar = tqdm(total=total, desc="pruning", unit="step", file=sys.stderr, delay=0.1)

        def on_step(self, report: StepReport, trajectory: Trajectory) -> None:
            self.bar.update(1)
            self.bar.set_postfix(sparsity=f"{report.sparsity:.3f}", loss=f"{report.loss or float('nan'):.3f}")
            trajectory.save(out / "trajectory.json")

    started = time.perf_counter()
    progress = Progress()
    trajectory, prepared = run(args.model, args.data, settings, observer=progress)
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
    p = sub.add_parser(
        "eval", help="perplexity, multiple-choice accuracy, size, FLOPs and throughput of a checkpoint or base model"
    )
    p.add_argument("path", help="checkpoint folder, local model folder or hub id")
    p.add_argument("--data", default=None, help="held-out text (.txt or .jsonl) for perplexity")
    p.add_argument("--seq-len", type=_ints, default=[256], help="perplexity window length(s), e.g. 128,512")
    p.add_argument("--max-windows", type=int, default=None)
    p.add_argument("--mc", action="append", default=[], help="multiple-choice file (repeatable)")
    p.add_argument(
        "--mc-format",
        action="append",
        default=[],
        choices=["auto", "jsonl", "arc", "hellaswag", "copa"],
        help="format of each --mc file, in order (one value applies to all; default: auto)",
    )
    p.add_argument("--mc-limit", type=int, default=None, help="score only the first N items of each set")
    p.add_argument("--batch-size", type=int, default=16, help="multiple-choice items per forward pass")
    p.add_argument("--throughput", action="store_true", help="measure prefill and decode tokens/s")
    p.add_argument("--prompt-tokens", type=int, default=128, help="prompt length for --throughput")
    p.add_argument("--decode-tokens", type=int, default=64, help="generated tokens for --throughput")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from gisp.eval.harness import checkpoint_bytes, evaluate_model, load_for_eval

    if not (args.data or args.mc or args.throughput):
        raise GispError("nothing to measure: give --data, --mc or --throughput", field="data")
    if not args.seq_len or min(args.seq_len) < 2:
        raise GispError("seq_len must be at least 2", field="seq_len")
    if args.data and not Path(args.data).is_file():
        raise GispError(f"data file {args.data!r} does not exist", field="data")
    for path in args.mc:
        if not Path(path).is_file():
            raise GispError(f"multiple-choice file {path!r} does not exist", field="mc")
    formats = args.mc_format
    if len(formats) > 1 and len(formats) != len(args.mc):
        raise GispError("give one --mc-format, or one per --mc file", field="mc_format")
    if len(formats) <= 1:
        formats = (formats or ["auto"]) * len(args.mc)
    mc = list(zip(args.mc, formats, strict=True))
    model, tokenizer = load_for_eval(args.path, device=args.device)
    summary = {
        "path": args.path,
        "bytes": checkpoint_bytes(args.path),
        **evaluate_model(
            model,
            tokenizer,
            data=args.data,
            seq_lens=args.seq_len,
            max_windows=args.max_windows,
            mc=mc,
            mc_limit=args.mc_limit,
            batch_size=args.batch_size,
            throughput=args.throughput,
            prompt_tokens=args.prompt_tokens,
            decode_tokens=args.decode_tokens,
        ),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>22}: {value}")
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
