"""Inference speed of pruned checkpoints on CPU: prefill and decode tokens/s of the dense model and
of every checkpoint of one `gisp` trajectory, for stories260K (checkpoints exported with
`gisp.export_all` and reloaded with `gisp.load_pruned`, as deployed) and for a ~100M random-weight
Llama built in code (checkpoints sliced in memory with the engine's adapter). Speedup is set
against the parameter ratio (and the FLOPs ratio) it could at best reach.
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGETS = [0.2, 0.3, 0.4, 0.5]


def stories_models(args, tmp: Path):
    """(label, model, params, flops/token) for dense stories260K and its exported checkpoints."""
    import gisp

    split = common.split_tinystories(tmp)
    settings = gisp.PruneSettings(
        targets=TARGETS,
        steps=args.steps,
        samples=args.samples,
        seq_len=256 if not args.quick else 128,
        heldout=0,
        reconstruct="none",  # speed depends on the shape only; the export has no refit tensors
    )
    trajectory, prepared = gisp.run(str(common.STORIES), split.calibration, settings)
    dense = gisp.load_model(str(common.STORIES)).model
    spec = prepared.loaded.adapter.spec
    yield "dense", dense, common.param_count(dense), gisp.Structure.full(spec).flops_per_token(spec)
    for path, record in zip(
        gisp.export_all(trajectory, tmp / "export"), sorted(trajectory.checkpoints, key=lambda r: r.target), strict=True
    ):
        model = gisp.load_pruned(path)
        yield f"{record.target:g}", model, common.param_count(model), record.flops_per_token


def random_models(args):
    """The same for a code-built ~100M Llama, pruned with synthetic windows and sliced in memory."""
    import gisp
    from gisp.adapters import adapter_for

    loaded = common.random_llama(768, 12, 12, 4, 2048, 32000)
    dense = copy.deepcopy(loaded.model)
    spec = loaded.adapter.spec
    settings = gisp.PruneSettings(
        targets=TARGETS, steps=2 if args.quick else 4, samples=4, seq_len=64, heldout=0, reconstruct="none"
    )
    examples = common.synthetic_examples(spec.vocab_size, settings.samples, settings.seq_len)
    trajectory = gisp.prune(loaded, examples, settings, gisp.new_trajectory(loaded, settings, "synthetic"))
    del loaded
    full = gisp.Structure.full(spec)
    yield "dense", dense, common.param_count(dense), full.flops_per_token(spec)
    for record in sorted(trajectory.checkpoints, key=lambda r: r.target):
        model = copy.deepcopy(dense)  # the dense copy stays whole for the next checkpoint
        adapter_for(model.config).slice_model(model, full, record.structure)
        yield f"{record.target:g}", model, common.param_count(model), record.flops_per_token


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--models", default="stories260K,random-100M")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens (prefill)")
    parser.add_argument("--decode", type=int, default=None, help="generated tokens (decode)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per model (median), after a warm-up")
    parser.add_argument("--steps", type=int, default=None, help="schedule steps of the stories260K trajectory")
    parser.add_argument("--samples", type=int, default=None)
    args = parser.parse_args()
    args.decode = args.decode or (32 if args.quick else 64)
    args.repeats = args.repeats or (3 if args.quick else 9)
    args.steps = args.steps or (4 if args.quick else 8)
    args.samples = args.samples or (8 if args.quick else 32)
    common.setup(args)
    common.require_assets(common.STORIES, common.TINYSTORIES)

    from gisp.eval.throughput import measure_throughput

    tmp = Path(tempfile.mkdtemp(prefix="gisp-bench-inference-"))
    results = []
    for name in args.models.split(","):
        models = list(stories_models(args, tmp) if name == "stories260K" else random_models(args))
        # Round-robin: every round measures each model once (after its own warm-up), so a change in
        # the neighbours' load hits all models alike instead of whichever was measured then.
        rounds: dict[str, list] = {label: [] for label, *_ in models}
        for _ in range(args.repeats):
            for label, model, _params, _flops in models:
                rounds[label].append(measure_throughput(model, args.prompt, args.decode, batch_size=1, repeats=1))
        for label, _model, params, flops in models:
            runs = rounds[label]
            prefill = statistics.median(r.prefill_tokens_per_s for r in runs)
            decode = statistics.median(r.decode_tokens_per_s for r in runs)
            results.append(
                {
                    "model": name,
                    "checkpoint": label,
                    "parameters": params,
                    "flops_per_token": flops,
                    **runs[0].to_dict(),
                    "prefill_tokens_per_s": prefill,
                    "decode_tokens_per_s": decode,
                    "rounds": [r.to_dict() for r in runs],
                }
            )
            print(f"{name} {label}: prefill {prefill:,.0f} tok/s, decode {decode:,.1f} tok/s", flush=True)
        del models

    rows = []
    for r in results:
        dense = next(d for d in results if d["model"] == r["model"] and d["checkpoint"] == "dense")
        param_ratio = dense["parameters"] / r["parameters"]
        flops_ratio = dense["flops_per_token"] / r["flops_per_token"]
        prefill = r["prefill_tokens_per_s"] / dense["prefill_tokens_per_s"]
        decode = r["decode_tokens_per_s"] / dense["decode_tokens_per_s"]
        rows.append(
            [
                r["model"],
                r["checkpoint"],
                f"{r['parameters']:,}",
                f"{param_ratio:.2f}",
                f"{flops_ratio:.2f}",
                f"{r['prefill_tokens_per_s']:,.0f}",
                f"{prefill:.2f}",
                f"{prefill / param_ratio:.2f}",
                f"{r['decode_tokens_per_s']:,.1f}",
                f"{decode:.2f}",
                f"{decode / param_ratio:.2f}",
            ]
        )
    mode = "quick" if args.quick else "full"
    text = "\n".join(
        [
            common.run_header(f"CPU inference speed of pruned checkpoints ({mode} mode)", args),
            f"Batch 1, prompt {args.prompt} random tokens (prefill = one forward), then {args.decode} greedy tokens "
            f"one at a time with the KV cache (decode); `gisp.eval.throughput.measure_throughput` (one warm-up, one "
            f"timed run) per model per round, models interleaved, median of {args.repeats} rounds, "
            f"{args.threads} torch thread(s). stories260K trajectory: gisp, "
            f"{args.samples} calibration windows, {args.steps} steps, exported and reloaded with `load_pruned`; "
            "random-100M: gisp on 4 synthetic windows × 64 tokens, sliced in memory. Ratios are against the dense "
            "model of the same row group; 'speedup/params' = speedup ÷ (dense params / pruned params).\n",
            common.markdown_table(
                [
                    "model",
                    "sparsity",
                    "params",
                    "params ratio",
                    "FLOPs ratio",
                    "prefill tok/s",
                    "prefill speedup",
                    "prefill speedup/params",
                    "decode tok/s",
                    "decode speedup",
                    "decode speedup/params",
                ],
                rows,
            )
            + "\n",
        ]
    )
    common.emit(text, args)
    common.write_json({"settings": vars(args), "results": results}, args)


if __name__ == "__main__":
    main()
