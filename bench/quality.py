"""Perplexity after pruning stories260K: methods × targets, plus GISP ablations (importance estimator,
block normalization, protected first/last layers), on held-out TinyStories, WikiText-2 test and C4.

Calibration uses windows of the first part of tinystories_val.txt only; TinyStories perplexity is
measured on the rest of the file (both written to a temp folder, see `common.split_tinystories`).
One pruning run gives every target; each checkpoint is measured while the pruner holds the model
at exactly that subnetwork (and, once, cross-checked against `gisp.materialize`).
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SETS = ("tinystories", "wikitext2", "c4")
DETERMINISTIC = {"magnitude"}  # methods that use neither calibration data nor a seed


@dataclass
class Config:
    label: str
    method: str
    importance: str = "taylor"
    normalization: str = "param"
    protect: tuple[int, ...] = ()


def configs(args) -> list[Config]:
    methods = common.keep_registered(args.methods.split(","), "method")
    out = [Config(m, m) for m in methods]
    if "gisp" in methods and not args.no_ablations:
        extra = [i for i in args.importances.split(",") if i != "taylor"]
        for importance in common.keep_registered(extra, "importance"):
            out.append(Config(f"gisp {importance}", "gisp", importance=importance))
        out.append(Config("gisp reference-norm", "gisp", normalization="reference"))
        out.append(Config("gisp protect[0,4]", "gisp", protect=(0, 4)))
    return out


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--methods", default="gisp,oneshot,wanda-sp,magnitude,random")
    parser.add_argument("--importances", default="taylor,fisher", help="GISP importance ablation")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--targets", default="0.2,0.3,0.4,0.5")
    parser.add_argument("--seeds", type=int, default=None, help="calibration seeds per config (default 3; quick 2)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--eval-windows", type=int, default=None, help="windows of seq_len per evaluation text")
    parser.add_argument("--calib-fraction", type=float, default=0.25)
    args = parser.parse_args()
    quick = args.quick
    args.seeds = args.seeds or (2 if quick else 3)
    args.steps = args.steps or (4 if quick else 8)
    args.samples = args.samples or (8 if quick else 32)
    args.eval_windows = args.eval_windows or (8 if quick else 48)
    common.setup(args)
    common.require_assets(common.STORIES, common.TINYSTORIES, common.WIKITEXT, common.C4)

    import gisp

    targets = [float(t) for t in args.targets.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="gisp-bench-quality-"))
    split = common.split_tinystories(tmp, args.calib_fraction)
    base = gisp.load_model(str(common.STORIES))
    sets = common.eval_sets(base.tokenizer, split.evaluation, args.seq_len, args.eval_windows, SETS)
    dense = common.perplexities(base.model, sets)
    print(f"calibration: {split.calibration} ({split.calibration_chars:,} chars); evaluation: {split.evaluation}")
    print("dense:", {k: round(v, 3) for k, v in dense.items()})

    runs = []
    checked = False
    for config in configs(args):
        seeds = [0] if config.method in DETERMINISTIC else list(range(args.seeds))
        for seed in seeds:
            settings = gisp.PruneSettings(
                targets=targets,
                method=config.method,
                steps=args.steps,
                samples=args.samples,
                seq_len=args.seq_len,
                seed=seed,
                importance=config.importance,
                normalization=config.normalization,
                protect_layers=list(config.protect),
                heldout=0,
                reconstruct="none",  # this study is of the pruning alone; bench/reconstruction.py adds the refit
            )
            measured = common.Measured()
            started = time.perf_counter()
            trajectory, _ = gisp.run(
                str(common.STORIES),
                split.calibration,
                settings,
                observer=common.eval_observer(measured),
                measure=common.timed_measure(lambda m: common.perplexities(m, sets), measured),
            )
            wall = time.perf_counter() - started
            if not checked:  # the masked measurement must equal the materialized checkpoint's
                top = max(targets)
                sliced = gisp.materialize(trajectory, top)
                again = common.perplexities(sliced.model, {"tinystories": sets["tinystories"]})["tinystories"]
                print(
                    f"check: {config.label} {top}: masked {measured.metrics[top]['tinystories']:.4f} "
                    f"vs materialized {again:.4f}"
                )
                checked = True
            runs.append(
                {
                    "label": config.label,
                    "method": config.method,
                    "importance": config.importance,
                    "normalization": config.normalization,
                    "protect": list(config.protect),
                    "seed": seed,
                    "wall_seconds": wall,
                    "prune_seconds": measured.pruning_seconds,
                    "targets": {
                        str(r.target): {
                            "sparsity": r.sparsity,
                            "parameters": r.parameter_count,
                            "perplexity": measured.metrics[r.target],
                            "kept_kv_groups": r.structure.layer_widths()[0],
                            "kept_channels": r.structure.layer_widths()[1],
                        }
                        for r in trajectory.checkpoints
                    },
                }
            )
            ppl = measured.metrics[max(targets)]
            print(
                f"{config.label:22s} seed {seed}: {wall:5.1f} s; at {max(targets)}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in ppl.items()),
                flush=True,
            )

    arch = base.adapter.spec
    report(args, targets, dense, runs, split)
    common.write_json(
        {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "split": {"calibration_chars": split.calibration_chars, "evaluation_chars": split.evaluation_chars},
            "arch": arch.to_dict(),
            "targets": targets,
            "dense": dense,
            "runs": runs,
        },
        args,
    )


def report(args, targets: list[float], dense: dict[str, float], runs: list[dict], split: common.Split) -> None:
    labels = list(dict.fromkeys(r["label"] for r in runs))
    mode = "quick" if args.quick else "full"
    text = [
        common.run_header(f"Perplexity vs sparsity, stories260K ({mode} mode)", args),
        f"Calibration: {args.samples} windows × {args.seq_len} tokens drawn (seeded) from the first "
        f"{split.calibration_chars:,} chars of tinystories_val.txt; {args.steps} steps. Evaluation: the first "
        f"{args.eval_windows} windows × {args.seq_len} tokens of the rest of tinystories_val.txt, of "
        "wiki.test.raw and of c4_sample.jsonl (each a single token stream). mean ± std over seeds (n).\n",
        "Dense: " + ", ".join(f"{k} {v:.2f}" for k, v in dense.items()) + "\n",
    ]
    for name in SETS:
        rows = []
        for label in labels:
            mine = [r for r in runs if r["label"] == label]
            row: list[object] = [f"{label} (n={len(mine)})"]
            for t in targets:
                row.append(common.mean_std([r["targets"][str(t)]["perplexity"][name] for r in mine]))
            rows.append(row)
        text.append(f"**{name} perplexity**\n")
        text.append(common.markdown_table(["config"] + [f"{t:g}" for t in targets], rows) + "\n")
    rows = []
    for label in labels:
        mine = [r for r in runs if r["label"] == label]
        top = str(max(targets))
        rows.append(
            [
                label,
                common.mean_std([r["prune_seconds"] for r in mine], 1),
                f"{mine[0]['targets'][top]['sparsity']:.3f}",
                f"{mine[0]['targets'][top]['parameters']:,}",
                str(mine[0]["targets"][top]["kept_kv_groups"]),
            ]
        )
    text.append("**run cost and shape at the largest target (first seed)**\n")
    text.append(
        common.markdown_table(
            ["config", "pruning s (all steps)", f"sparsity @{max(targets):g}", "params", "KV groups/layer"], rows
        )
        + "\n"
    )
    common.emit("\n".join(text), args)


if __name__ == "__main__":
    main()
