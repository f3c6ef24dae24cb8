"""Reconstruction inside the pruning loop (`reconstruct_in_loop`) against the stage alone: gisp
(fisher) with the default reconstruction, with and without a refit after every step, held-out
perplexity at 0.2–0.5 on TinyStories (the part no calibration saw), WikiText-2 test and C4, with
wall time and peak RSS. Each run is its own process (`bench/tyr.py --child`, the same
calibration split, held-out windows and measurement as §9), one torch thread."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import tyr  # noqa: E402

VARIANT = "lstsq-select-anchored"  # the stage's default
CONFIGS: dict[str, dict] = {
    "gisp+default": dict(method="gisp", reconstruct=VARIANT),
    "gisp+default in-loop": dict(method="gisp", reconstruct=VARIANT, reconstruct_in_loop=True),
}


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    common.add_split_run_arguments(parser)
    parser.add_argument("--ns-items", type=int, default=200, help="next-sentence items (held-out TinyStories)")
    parser.add_argument("--reference", default="gisp+default", help="config the ratio table divides by")
    args = parser.parse_args()
    if args.quick:
        args.targets, args.samples, args.eval_windows, args.seeds, args.steps = "0.5", 16, 8, 1, 4
    args.tyr, args.title = "n/a", "reconstruction in the loop vs after it"  # for tyr.report
    common.setup(args)
    model = args.model or common.STORIES
    common.require_assets(model, common.TINYSTORIES, common.WIKITEXT, common.C4)
    targets = [float(t) for t in args.targets.split(",")]
    split = common.split_tinystories(Path(tempfile.mkdtemp(prefix="gisp-bench-in-loop-")))
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for label in args.configs.split(","):
            result = tyr.run_child(tyr.child_spec(args, split, model, targets, seed, CONFIGS[label]), label)
            if result is None:
                continue
            runs.append(result)
            top = result["targets"][str(max(targets))]
            print(
                f"{label:22s} seed {seed}: {result['wall_seconds']:6.1f} s, {result['peak_rss_mib']:.0f} MiB; "
                f"at {max(targets)}: " + ", ".join(f"{k} {v:.2f}" for k, v in top["perplexity"].items()),
                flush=True,
            )
    tyr.report(args, targets, runs)
    common.write_json({"settings": {k: str(v) for k, v in vars(args).items()}, "targets": targets, "runs": runs}, args)


if __name__ == "__main__":
    main()
