"""Pruning cost: time per step against its floor (one forward+backward over the same calibration
batches, measured in the same process just before), whole-run wall time, and peak RSS against the
bytes of the weights. Each configuration runs in its own subprocess so memory peaks do not mix.

Configurations: stories260K (real weights, TinyStories windows), a ~100M-parameter random-weight
Llama and a ~1.1B one (TinyLlama's shape) built in code, driven through `gisp.prune` with
synthetic token windows.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SHAPES = {  # hidden, layers, heads, kv heads, intermediate, vocab
    "random-100M": (768, 12, 12, 4, 2048, 32000),
    "random-1.1B": (2048, 22, 32, 4, 5632, 32000),
}


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(spec: dict) -> dict:
    """One configuration, in a fresh process: build, measure the floor, prune, report."""
    import torch

    common.quiet_transformers()
    torch.set_num_threads(spec["threads"])
    import gisp
    from gisp.objectives import get_objective

    after_imports = rss_mib()
    started = time.perf_counter()
    if spec["name"] == "stories260K":
        from gisp.data import build_examples, read_records

        loaded = gisp.load_model(str(common.STORIES))
        _, records = read_records(common.TINYSTORIES)
        examples, _ = build_examples(loaded.tokenizer, records, "lm", spec["samples"], spec["seq_len"], 0, 0)
    else:
        loaded = common.random_llama(*SHAPES[spec["name"]])
        examples = common.synthetic_examples(loaded.model.config.vocab_size, spec["samples"], spec["seq_len"])
    build_seconds = time.perf_counter() - started
    weights = common.weight_bytes(loaded.model)
    params = common.param_count(loaded.model)
    after_build = rss_mib()

    settings = gisp.PruneSettings(
        targets=[0.5],
        steps=spec["steps"],
        samples=spec["samples"],
        seq_len=spec["seq_len"],
        importance=spec["importance"],
        batch_size=spec["batch_size"],
        gradient_checkpointing=spec["checkpointing"],
        heldout=0,
    )
    objective = get_objective("perplexity")
    batches = objective.batches(examples, settings.batch_size, 0)
    from gisp.importance.checkpointing import gradient_checkpointing

    with gradient_checkpointing(loaded.model, spec["checkpointing"]):  # the floor runs as the steps will
        floors = [forward_backward(loaded, objective, batches) for _ in range(spec["floor_repeats"])]
    floor = min(floors)

    measured = common.Measured()
    trajectory = gisp.new_trajectory(loaded, settings, "synthetic")
    started = time.perf_counter()
    gisp.prune(loaded, examples, settings, trajectory, common.eval_observer(measured))
    prune_seconds = time.perf_counter() - started
    return {
        **spec,
        "parameters": params,
        "weight_bytes": weights,
        "build_seconds": build_seconds,
        "floor_seconds": floor,
        "floor_runs": floors,
        "step_seconds": measured.step_seconds,
        "prune_seconds": prune_seconds,
        "rss_after_imports_mib": after_imports,
        "rss_after_build_mib": after_build,
        "peak_rss_mib": rss_mib(),
        "threads": spec["threads"],
    }


def forward_backward(loaded, objective, batches) -> float:
    """The floor: what the Taylor estimator cannot avoid, one forward and one backward pass over
    every calibration batch with gradients on exactly the prunable weights."""
    import torch

    model = loaded.model
    for param in model.parameters():
        param.requires_grad_(False)
    tensors = [
        group.tensor
        for layer in loaded.adapter.layers(model)
        for kind in ("attn", "mlp")
        for group in loaded.adapter.weight_groups(layer, kind)
    ]
    for tensor in tensors:
        tensor.requires_grad_(True)
    total = sum(batch.num_samples for batch in batches)
    started = time.perf_counter()
    for batch in batches:
        (objective.sample_losses(model, batch).sum() / total).backward()
    seconds = time.perf_counter() - started
    for tensor in tensors:
        tensor.grad = None
        tensor.requires_grad_(False)
    torch.set_grad_enabled(True)
    return seconds


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--configs", default=None, help="stories260K,random-100M,random-1.1B")
    parser.add_argument("--importances", default="taylor", help="e.g. taylor,fisher")
    parser.add_argument("--checkpointing", action="store_true", help="also run each config with gradient checkpointing")
    parser.add_argument("--child", default=None, help=argparse_hidden())
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    common.setup(args)
    default = "stories260K,random-100M" if args.quick else "stories260K,random-100M,random-1.1B"
    names = (args.configs or default).split(",")
    sizes = {  # samples, seq_len, steps, batch size
        "stories260K": (8, 128, 4, 8) if args.quick else (32, 256, 8, 8),
        "random-100M": (4, 64, 2, 4) if args.quick else (8, 256, 4, 4),
        "random-1.1B": (1, 64, 2, 1) if args.quick else (1, 128, 2, 1),
    }
    importances = common.keep_registered(args.importances.split(","), "importance")
    results, skipped = [], []
    for name in names:
        for importance in importances:
            for checkpointing in [False, True] if args.checkpointing else [False]:
                samples, seq_len, steps, batch_size = sizes[name]
                spec = {
                    "name": name,
                    "importance": importance,
                    "checkpointing": checkpointing,
                    "samples": samples,
                    "seq_len": seq_len,
                    "steps": steps,
                    "batch_size": batch_size,
                    "threads": args.threads,
                    "floor_repeats": 1 if name == "random-1.1B" else 2,
                }
                if name == "random-1.1B":
                    need = 1.1e9 * 4 * 3.2 / 2**20  # weights + gradients + activations/slicing copies, MiB
                    if mem_available_mib() < need:
                        reason = f"needs ~{need / 1024:.0f} GiB, {mem_available_mib() / 1024:.1f} GiB available"
                        skipped.append(f"{name}: {reason}")
                        print(f"note: skipped {name} ({reason})")
                        continue
                print(f"running {spec}", flush=True)
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    reason = f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
                    skipped.append(f"{name} ({importance}): {reason}")
                    print(f"note: {name} failed ({reason})")
                    continue
                result = json.loads(lines[-1][len("RESULT ") :])
                results.append(result)
                print(summary(result), flush=True)
    report(args, results, skipped)
    common.write_json({"settings": vars(args), "results": results, "skipped": skipped}, args)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


def summary(r: dict) -> str:
    return (
        f"{r['name']} {r['importance']}: floor {r['floor_seconds']:.3f} s, first step {r['step_seconds'][0]:.3f} s, "
        f"peak {r['peak_rss_mib']:.0f} MiB"
    )


def report(args, results: list[dict], skipped: list[str]) -> None:
    rows = []
    for r in results:
        steps = r["step_seconds"]
        weights_mib = r["weight_bytes"] / 2**20
        rows.append(
            [
                r["name"] + (" +ckpt" if r["checkpointing"] else ""),
                r["importance"],
                f"{r['parameters'] / 1e6:.2f} M",
                f"{r['samples']}×{r['seq_len']}",
                r["steps"],
                f"{r['floor_seconds']:.3f}",
                f"{steps[0]:.3f}",
                f"{steps[0] / r['floor_seconds']:.2f}",
                f"{sum(steps) / len(steps) / r['floor_seconds']:.2f}",
                f"{r['prune_seconds']:.1f}",
                f"{weights_mib:.1f}",
                f"{r['peak_rss_mib']:.0f}",
                f"{r['rss_after_imports_mib']:.0f}",
                f"{(r['peak_rss_mib'] - r['rss_after_imports_mib']) / weights_mib:.2f}",
            ]
        )
    mode = "quick" if args.quick else "full"
    notes = "".join(f"\nNot run: {s}." for s in skipped)
    text = "\n".join(
        [
            common.run_header(f"Pruning cost ({mode} mode)", args),
            "floor = one forward+backward over all calibration batches with gradients on the prunable weights "
            "(min of 2, 1 for 1.1B; dense model, same process; with gradient checkpointing in +ckpt rows); "
            "step 1 runs on the dense model, so step1/floor is "
            "the method's overhead; mean step/floor includes later, smaller models. Peak RSS is the process's "
            "ru_maxrss (model build included); 'imports' is RSS after importing torch/transformers/gisp, and "
            "(peak − imports)/weights the memory pruning needs per byte of weights." + notes + "\n",
            common.markdown_table(
                [
                    "model",
                    "importance",
                    "params",
                    "calib",
                    "steps",
                    "floor s",
                    "step 1 s",
                    "step1/floor",
                    "mean step/floor",
                    "run wall s",
                    "weights MiB",
                    "peak RSS MiB",
                    "imports MiB",
                    "(peak−imports)/weights",
                ],
                rows,
            )
            + "\n",
        ]
    )
    common.emit(text, args)


if __name__ == "__main__":
    main()
