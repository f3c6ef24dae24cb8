"""Does iterating help? `gisp` on stories260K to 0.5 sparsity with 1, 4, 8, 16, 32, 64 steps: held-out
perplexity and wall time per schedule (same calibration windows for every setting of a seed)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SETS = ("tinystories", "wikitext2", "c4")


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", default=None, help="comma-separated schedules (default 1,4,8,16,32,64)")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--eval-windows", type=int, default=None)
    parser.add_argument("--importance", default="taylor")
    args = parser.parse_args()
    args.steps = args.steps or ("1,4,8,16" if args.quick else "1,4,8,16,32,64")
    args.samples = args.samples or (8 if args.quick else 32)
    args.eval_windows = args.eval_windows or (8 if args.quick else 32)
    common.setup(args)
    common.require_assets(common.STORIES, common.TINYSTORIES, common.WIKITEXT, common.C4)

    import gisp

    tmp = Path(tempfile.mkdtemp(prefix="gisp-bench-schedule-"))
    split = common.split_tinystories(tmp)
    base = gisp.load_model(str(common.STORIES))
    sets = common.eval_sets(base.tokenizer, split.evaluation, args.seq_len, args.eval_windows, SETS)
    dense = common.perplexities(base.model, sets)
    schedules = [int(s) for s in args.steps.split(",")]
    runs = []
    for steps in schedules:
        for seed in range(args.seeds):
            settings = gisp.PruneSettings(
                targets=[args.target],
                steps=steps,
                samples=args.samples,
                seq_len=args.seq_len,
                seed=seed,
                importance=args.importance,
                heldout=0,
            )
            measured = common.Measured()
            started = time.perf_counter()
            gisp.run(
                str(common.STORIES),
                split.calibration,
                settings,
                observer=common.eval_observer(measured),
                measure=common.timed_measure(lambda m: common.perplexities(m, sets), measured),
            )
            wall = time.perf_counter() - started
            runs.append(
                {
                    "steps": steps,
                    "seed": seed,
                    "wall_seconds": wall,
                    "prune_seconds": measured.pruning_seconds,
                    "perplexity": measured.metrics[args.target],
                    "sparsity": measured.sparsity[args.target],
                }
            )
            print(f"steps {steps:3d} seed {seed}: {wall:6.1f} s, {measured.metrics[args.target]}", flush=True)

    rows = []
    for steps in schedules:
        mine = [r for r in runs if r["steps"] == steps]
        rows.append(
            [steps]
            + [common.mean_std([r["perplexity"][name] for r in mine]) for name in SETS]
            + [
                common.mean_std([r["prune_seconds"] for r in mine], 1),
                common.mean_std([r["prune_seconds"] / steps for r in mine], 2),
            ]
        )
    mode = "quick" if args.quick else "full"
    text = "\n".join(
        [
            common.run_header(f"Schedule length, gisp to {args.target:g} on stories260K ({mode} mode)", args),
            f"Calibration: {args.samples} windows × {args.seq_len} tokens from the calibration part of "
            f"tinystories_val.txt ({args.importance} importance, param normalization), {args.seeds} seed(s); "
            f"evaluation: {args.eval_windows} windows × {args.seq_len} tokens per held-out text. "
            "Pruning seconds exclude model loading and checkpoint evaluation.\n",
            "Dense: " + ", ".join(f"{k} {v:.2f}" for k, v in dense.items()) + "\n",
            common.markdown_table(
                ["steps"] + [f"{n} ppl" for n in SETS] + ["pruning s", "s / step"],
                rows,
            )
            + "\n",
        ]
    )
    common.emit(text, args)
    common.write_json({"settings": vars(args), "dense": dense, "runs": runs}, args)


if __name__ == "__main__":
    main()
