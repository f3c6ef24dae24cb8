"""How tyr's cost grows with the number of layers: random-weight Llamas of one width (default
stories260K's: hidden 64, 8 heads, 4 KV heads, 172 MLP channels, vocabulary 512) and 2, 4, 8, 16
layers, one target, a reduced search budget, synthetic token windows. Per layer count: the
ladder seconds, the search seconds (wall and CPU of this process: the box is shared, and CPU
seconds move less with the load), the peak RSS, and gisp's pruning (fisher, the same calibration,
no reconstruction stage) beside it. Every run is its own process, so its peak RSS is its own.

`--shape random-100M` is speed.py's ~100M-parameter Llama (hidden 768, 12 layers, 4 KV heads,
2048 channels, vocabulary 32000) at its own depth: one cost line for a model of that size.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from tyr import out_size, truncate_out, tyr_overrides  # noqa: E402

from gisp import PruneObserver  # noqa: E402

SHAPES = {  # hidden, heads, kv heads, intermediate, vocab; layers from --layers
    "stories": (64, 8, 4, 172, 512),
    "random-100M": (768, 12, 4, 2048, 32000),
}
REDUCED = "tyr_levels=5,tyr_rounds=1,tyr_generations=4,tyr_offspring=8,tyr_stage_samples=4/16,tyr_stage_keep=2"


def child(spec: dict) -> dict:
    """One (shape, layers, method) run in a fresh process: prune one target, time each phase."""
    import torch

    common.quiet_transformers()
    torch.set_num_threads(1)
    import gisp

    hidden, heads, kv, inter, vocab = SHAPES[spec["shape"]]
    loaded = common.random_llama(hidden, spec["layers"], heads, kv, inter, vocab)
    parameters = common.param_count(loaded.model)  # dense: gisp slices the model in place
    examples = common.synthetic_examples(vocab, spec["samples"], spec["seq_len"])
    settings = gisp.PruneSettings(
        targets=[spec["target"]],
        method=spec["method"],
        samples=spec["samples"],
        seq_len=spec["seq_len"],
        steps=spec["steps"],
        heldout=0,
        **(spec["tyr"] if spec["method"] == "tyr" else {}),
    )
    phases = Phases()
    trajectory = gisp.new_trajectory(loaded, settings, "synthetic")
    wall, cpu = time.perf_counter(), time.process_time()
    gisp.prune(loaded, examples, settings, trajectory, phases)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        **spec,
        "parameters": parameters,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "phase_wall": phases.wall,
        "phase_cpu": phases.cpu,
        "sparsity": trajectory.checkpoints[-1].sparsity,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }


class Phases(PruneObserver):
    """A PruneObserver that charges the time since the previous search report to the phase of
    the current one: the interval before a "ladder" report built that layer's ladders, the one
    before a "search" report ran that generation (the first also caches the dense logits)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {"ladder": 0.0, "search": 0.0}
        self.cpu: dict[str, float] = {"ladder": 0.0, "search": 0.0}
        self._last = (time.perf_counter(), time.process_time())

    def on_search(self, progress) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[progress.phase] += now[0] - self._last[0]
        self.cpu[progress.phase] += now[1] - self._last[1]
        self._last = now

    def on_step(self, report, trajectory) -> None:  # a target done: the next one starts afresh
        self._last = (time.perf_counter(), time.process_time())


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print("RESULT " + json.dumps(child(json.loads(sys.argv[2]))), flush=True)
        return
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--shape", default="stories", choices=list(SHAPES))
    parser.add_argument("--layers", default="2,4,8,16")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="gisp's schedule steps")
    parser.add_argument("--methods", default="gisp,tyr")
    parser.add_argument("--tyr", default=REDUCED, help="tyr settings over the defaults")
    args = parser.parse_args()
    if args.quick:
        args.layers, args.samples, args.seq_len = "2,4", 8, 64
    common.setup(args)
    overrides = tyr_overrides(args.tyr)
    runs = []
    keep = out_size(args)
    for layers in [int(n) for n in args.layers.split(",")]:
        for method in args.methods.split(","):
            spec = dict(
                shape=args.shape,
                layers=layers,
                method=method,
                target=args.target,
                samples=args.samples,
                seq_len=args.seq_len,
                steps=args.steps,
                tyr=overrides,
            )
            done = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                print(f"{method} {layers} layers failed:\n{done.stderr[-3000:]}", flush=True)
                continue
            runs.append(json.loads(lines[-1][len("RESULT ") :]))
            r = runs[-1]
            print(
                f"{method:4s} {layers:3d} layers: {r['wall_seconds']:7.1f} s wall, {r['cpu_seconds']:7.1f} s CPU, "
                f"{r['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            truncate_out(args, keep)  # this invocation's report replaces its previous one
            report(args, runs)
            common.write_json({"settings": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, args)


def report(args, runs: list[dict]) -> None:
    rows = []
    for layers in dict.fromkeys(r["layers"] for r in runs):
        mine = {r["method"]: r for r in runs if r["layers"] == layers}
        tyr, g = mine.get("tyr"), mine.get("gisp")
        rows.append(
            [
                layers,
                f"{next(iter(mine.values()))['parameters']:,}",
                f"{tyr['phase_wall']['ladder']:.1f} / {tyr['phase_cpu']['ladder']:.1f}" if tyr else "–",
                f"{tyr['phase_wall']['search']:.1f} / {tyr['phase_cpu']['search']:.1f}" if tyr else "–",
                f"{tyr['wall_seconds']:.1f} / {tyr['cpu_seconds']:.1f}" if tyr else "–",
                f"{tyr['peak_rss_mib']:.0f}" if tyr else "–",
                f"{g['wall_seconds']:.1f} / {g['cpu_seconds']:.1f}" if g else "–",
                f"{g['peak_rss_mib']:.0f}" if g else "–",
            ]
        )
    hidden, heads, kv, inter, vocab = SHAPES[args.shape]
    text = [
        common.run_header(f"tyr's cost against the number of layers ({args.shape} width)", args),
        f"Random-weight Llama: hidden {hidden}, {heads} heads, {kv} KV heads, {inter} MLP channels, vocabulary "
        f"{vocab}; one target ({args.target}); {args.samples} synthetic windows × {args.seq_len} tokens; tyr: "
        f"{args.tyr or 'defaults'}; gisp: fisher, {args.steps} steps, no reconstruction stage. Seconds as "
        "wall / CPU of the run's own process (one torch thread; the box is shared).\n",
        common.markdown_table(
            [
                "layers",
                "parameters",
                "tyr ladders s",
                "tyr search s",
                "tyr total s",
                "tyr peak RSS MiB",
                "gisp s",
                "gisp peak RSS MiB",
            ],
            rows,
        )
        + "\n",
    ]
    common.emit("\n".join(text), args)


if __name__ == "__main__":
    main()
