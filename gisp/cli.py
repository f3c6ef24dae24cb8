"""The `gisp` command. Engine commands (`prune`, `eval`) live here; other packages add theirs
through the `gisp.commands` entry-point group (a function that takes the subparsers object), so
the engine never imports the service."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, get_args, get_origin

from gisp.errors import ConfigError, GispError

EXIT_FAILURE = 1  # the command ran and failed (bad data, a model that cannot be loaded, ...)
EXIT_USAGE = 2  # the command line itself is wrong, as argparse reports it
EXIT_INTERRUPTED = 130


class UsageError(GispError):
    """A value given on the command line that the settings refuse: exit 2, like argparse's own errors."""

    code = "usage"


def _list_of(item: type) -> Callable[[str], list]:
    """An argparse type for comma-separated values, e.g. 0.2,0.4 or 0,31."""

    def parse(text: str) -> list:
        try:
            return [item(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__}s, got {text!r}") from None

    parse.__name__ = f"list of {item.__name__}"
    return parse


def add_setting_arguments(parser: argparse.ArgumentParser, service: bool = False) -> list[str]:
    """One option per pruning setting, from the settings' own metadata (defaults, choices, help).

    With `service`, only the settings a job may carry are added, and an option left out sends
    nothing, so the server's defaults apply. Returns the destination names."""
    from gisp.config import setting_specs

    names = []
    for spec in setting_specs():
        if service and not spec.service:
            continue
        flag = "--" + spec.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": spec.name, "help": spec.help}
        if spec.bounds_text():
            kwargs["help"] += f"; {spec.bounds_text()}"
        if spec.max_items is not None:
            kwargs["help"] += f", at most {spec.max_items} values"
        if spec.required:
            kwargs["required"] = True
        else:
            kwargs["default"] = argparse.SUPPRESS if service else spec.default
            if spec.default not in (None, False):
                kwargs["help"] += f" (default: {_shown(spec.default)})"
        if spec.type is bool:  # --x / --no-x: a setting that is on by default can be turned off
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(spec.type) is list:
            kwargs["type"] = _list_of(get_args(spec.type)[0])
        elif spec.type in (int, float):
            kwargs["type"] = spec.type
        if spec.choices is not None:
            kwargs["choices"] = spec.choices()
        parser.add_argument(flag, **kwargs)
        names.append(spec.name)
    return names


def _shown(default: Any) -> str:
    return ",".join(map(str, default)) or "none" if isinstance(default, list) else str(default)


def settings_from_args(args: argparse.Namespace):
    """`PruneSettings` from `add_setting_arguments` options; a refused value is a usage error."""
    from gisp.config import PruneSettings

    try:
        return PruneSettings(**setting_values(args, args.setting_names))
    except ConfigError as exc:
        raise UsageError(exc.message, field=exc.field) from None


def setting_values(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """The settings given on the command line (all of them, unless they were added for a service)."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


DATA_HELP = (
    "calibration data: .txt, .jsonl, or (with the `data` extra) .json, .csv, .parquet, .arrow, "
    "a save_to_disk folder or that folder zipped"
)


def add_column_arguments(parser: argparse.ArgumentParser) -> None:
    """--text-field, --prompt-field, ...: which columns of the data hold the records' parts."""
    from gisp.data.columns import COLUMN_FIELDS, DEFAULT_NAMES

    group = parser.add_argument_group("columns (one record kind; default: the .jsonl field names)")
    for name in COLUMN_FIELDS:
        flag = "--" + name.replace("_", "-")
        group.add_argument(flag, dest=name, default=None, help=f"column of the {DEFAULT_NAMES[name]!r} field")


def columns_from_args(args: argparse.Namespace):
    from gisp.data.columns import COLUMN_FIELDS, Columns

    return Columns.from_dict({name: getattr(args, name, None) for name in COLUMN_FIELDS})


def _prune_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune a model locally and export every target")
    p.add_argument("model", help="hub id or local model folder")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--eval-data", default=None, help="separate evaluation file for the checkpoints' metrics")
    add_column_arguments(p)
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.set_defaults(func=_run_prune, setting_names=add_setting_arguments(p))


def _run_prune(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gisp.export import export_all
    from gisp.methods.search import SearchProgress
    from gisp.pruner import PruneObserver, StepReport
    from gisp.run import run
    from gisp.trajectory import Trajectory

    settings = settings_from_args(args)
    out = Path(args.out)
    for name in ("data", "eval_data"):
        path = getattr(args, name)
        if path is not None and not Path(path).exists():
            raise GispError(f"{name.replace('_', ' ')} file {path!r} does not exist", field=name)
    columns = columns_from_args(args)

    class Progress(PruneObserver):
        def __init__(self) -> None:
            self.bar = tqdm(total=settings.total_steps, desc="pruning", unit="step", file=sys.stderr, delay=0.1)

        def on_step(self, report: StepReport, trajectory: Trajectory) -> None:
            self.bar.update(1)
            self.bar.set_postfix(sparsity=f"{report.sparsity:.3f}", loss=f"{report.loss or float('nan'):.3f}")
            trajectory.save(out / "trajectory.json")

        def on_search(self, progress: SearchProgress) -> None:
            fields = {"target": f"{progress.target:g}", "round": f"{progress.round}/{progress.rounds}"}
            fields[progress.phase] = f"{progress.done}/{progress.total}"
            if progress.best_fitness is not None:
                fields["kl"] = f"{progress.best_fitness:.4f}"
            self.bar.set_postfix(fields)

        def on_warning(self, message: str) -> None:
            tqdm.write(f"warning: {message}", file=sys.stderr)

        def on_trajectory(self, trajectory: Trajectory) -> None:
            trajectory.save(out / "trajectory.json")  # the refit tensors are under out/reconstruction/ already

    started = time.perf_counter()
    progress = Progress()
    trajectory, prepared = run(
        args.model,
        args.data,
        settings,
        observer=progress,
        eval_data=args.eval_data,
        columns=columns,
        reconstruction_dir=out,
        state_dir=out,
    )
    progress.bar.close()
    del prepared
    paths = export_all(trajectory, out, tensors_dir=out)
    trajectory.save(out / "trajectory.json")
    wall = time.perf_counter() - started
    rows = [
        {
            "target": r.target,
            "sparsity": round(r.sparsity, 4),
            "parameters": r.parameter_count,
            "flops_per_token": r.flops_per_token,
            "metrics": r.metrics,
            "unreconstructed_metrics": r.unreconstructed_metrics,
            "reconstruction": r.reconstruction,
            "reconstruction_rejected": r.reconstruction_rejected,
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
    p.add_argument("--seq-len", type=_list_of(int), default=[256], help="perplexity window length(s), e.g. 128,512")
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
    from gisp.eval.harness import evaluate_model, load_for_eval
    from gisp.eval.size import folder_bytes

    if not (args.data or args.mc or args.throughput):
        raise UsageError("nothing to measure: give --data, --mc or --throughput", field="data")
    if not args.seq_len or min(args.seq_len) < 2:
        raise UsageError("seq_len must be at least 2", field="seq_len")
    if args.data and not Path(args.data).is_file():
        raise GispError(f"data file {args.data!r} does not exist", field="data")
    for path in args.mc:
        if not Path(path).is_file():
            raise GispError(f"multiple-choice file {path!r} does not exist", field="mc")
    formats = args.mc_format
    if len(formats) > 1 and len(formats) != len(args.mc):
        raise UsageError("give one --mc-format, or one per --mc file", field="mc_format")
    if len(formats) <= 1:
        formats = (formats or ["auto"]) * len(args.mc)
    mc = list(zip(args.mc, formats, strict=True))
    model, tokenizer = load_for_eval(args.path, device=args.device)
    summary = {
        "path": args.path,
        "bytes": folder_bytes(args.path),
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
    print_summary(summary, args.json)
    return 0


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    """One JSON line, or one aligned `key: value` line per entry."""
    if as_json:
        print(json.dumps(summary))
        return
    width = max(map(len, summary), default=0)
    for key, value in summary.items():
        print(f"{key:>{width}}: {value}")


def _export_commands(sub: argparse._SubParsersAction) -> None:
    """One `export-<format>` command per registered exporter, with the exporter's own options."""
    from gisp.exporters import EXPORTERS

    for name in EXPORTERS.names():
        exporter = EXPORTERS.get(name)
        p = sub.add_parser(f"export-{name}", help=f"write a checkpoint as {exporter.help}")
        p.add_argument(
            "checkpoint", help="checkpoint folder (or a trajectory.json / `gisp prune` output folder with --target)"
        )
        p.add_argument("--out", required=True, help=f"output {'file' if exporter.suffix else 'folder'}")
        p.add_argument("--target", type=float, default=None, help="which checkpoint of a trajectory")
        p.add_argument("--json", action="store_true", help="print what was written as JSON")
        exporter.add_arguments(p)
        p.set_defaults(func=_run_export, exporter=name)


def _run_export(args: argparse.Namespace) -> int:
    from gisp.exporters import EXPORTERS, export

    exporter = EXPORTERS.get(args.exporter)
    if exporter.extra:
        require_extra(exporter.extra, *exporter.requires)
    summary = export(args.checkpoint, Path(args.out), args.exporter, args.target, **exporter.options_from_args(args))
    print_summary(summary, args.json)
    return 0


def require_extra(extra: str, *modules: str) -> None:
    """Fail with the install command when a command's optional dependencies are missing."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise GispError(f"this command needs {', '.join(missing)}: pip install 'gisp-service[{extra}]'")


def build_parser() -> argparse.ArgumentParser:
    from gisp import __version__

    parser = argparse.ArgumentParser(prog="gisp", description="Global Iterative Structured Pruning")
    parser.add_argument("--version", action="version", version=f"gisp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _prune_command(sub)
    _eval_command(sub)
    _export_commands(sub)
    for entry in entry_points(group="gisp.commands"):
        try:
            register = entry.load()
        except ImportError:  # a plugin's modules must import without its extras; one that does not is skipped
            logging.getLogger("gisp").debug("command plugin %r did not load", entry.value, exc_info=True)
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"gisp {args.command}: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except GispError as exc:
        print(f"gisp: error: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
