"""Reconstruction: perplexity of each method's checkpoints with every reconstruction variant, on
stories260K, held-out TinyStories, WikiText-2 test and C4; plus the stage's cost.

One pruning run per (method, seed) gives the structures and their un-reconstructed perplexity
(`none`); each variant then reconstructs those checkpoints from the dense model (the dense model is
never changed, so one load serves them all) and is measured on the same held-out windows.
Calibration: windows of the first part of tinystories_val.txt (`common.split_tinystories`), or with
`--calibration mixed` the same number of windows drawn equally from that part, WikiText-2 validation
and the second half of c4_sample.jsonl (`common.mixed_calibration`; no held-out window comes from them).
"""

from __future__ import annotations

import copy
import itertools
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SETS = ("tinystories", "wikitext2", "c4")
DETERMINISTIC = {"magnitude"}


def methods(args) -> list[tuple[str, str, str]]:
    """(label, method, importance)."""
    out = []
    for label in args.methods.split(","):
        method, _, importance = label.partition(":")
        out.append((label, method, importance or "fisher"))
    return out


def residual_share(extras: list[str]) -> float:
    """`+residual` cancels all of the residual stream's drift, `+residual0.5` half of it."""
    shares = [float(e.removeprefix("residual") or 1.0) for e in extras if e.startswith("residual")]
    return shares[-1] if shares else 0.0


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--methods", default="gisp:fisher,wanda-sp", help="method[:importance], comma separated")
    parser.add_argument(
        "--variants",
        default="bias,lstsq,lstsq-select",
        help="reconstructions, comma separated; NAME+guard runs the stage's end-to-end guard (the default in "
        "the engine), plain NAME measures the refit alone; +inputs also refits q/k/v and gate/up "
        "(reconstruct_inputs), +residual (+residualF: a share F) fits the residual stream's drift too "
        "(reconstruct_residual), +local fits the dense projection on the pruned inputs instead "
        "(reconstruct_target local), e.g. "
        "lstsq-select-anchored+guard+inputs",
    )
    parser.add_argument("--lambdas", default="0.01", help="ridge terms to try (each variant that solves)")
    parser.add_argument("--targets", default="0.2,0.3,0.4,0.5")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="run seeds first-seed … first-seed + seeds − 1 (to add a seed)"
    )
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--eval-windows", type=int, default=None)
    parser.add_argument(
        "--reconstruct-samples",
        type=int,
        default=0,
        help="windows the refit fits on (0: the calibration set; more draws further windows, the pruning is unchanged)",
    )
    parser.add_argument(
        "--refit-targets",
        default=None,
        help="refit only these of --targets (comma separated; default all): the pruning still runs to the "
        "largest target, so the structures match a run with all targets",
    )
    parser.add_argument("--calib-fraction", type=float, default=0.25)
    parser.add_argument(
        "--calibration",
        choices=("tinystories", "mixed"),
        default="tinystories",
        help="tinystories: windows of the first part of tinystories_val.txt; mixed: the same number of windows, "
        "a third each from that part, wiki.valid.raw and the second half of c4_sample.jsonl",
    )
    parser.add_argument("--model", type=Path, default=None, help="model folder or .gguf (default stories260K)")
    parser.add_argument(
        "--cost-random",
        choices=sorted(RANDOM_SHAPES),
        default=None,
        help="only the cost line, on a random Llama of this size (--samples × --seq-len synthetic tokens)",
    )
    parser.add_argument(
        "--cost-variants",
        default="lstsq,lstsq-select-anchored",
        help="variants the random cost line times (the stream alone); stage: the whole stage with the job defaults",
    )
    parser.add_argument(
        "--cost-layers",
        type=int,
        default=0,
        help="the stage cost line stops after this many layers of its checked fit (0: the whole stage)",
    )
    parser.add_argument("--no-cost", action="store_true", help="skip the cost line (a second pruning run)")
    args = parser.parse_args()
    if args.cost_random:
        common.setup(args)
        random_cost(args)
        return
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.eval_windows = args.eval_windows or (8 if args.quick else 48)
    common.setup(args)
    common.require_assets(common.STORIES, common.TINYSTORIES, common.WIKITEXT, common.C4)

    import logging

    import gisp
    from gisp.reconstruction.stage import reconstruct_checkpoints, reconstruction_examples

    guard_log = logging.getLogger("gisp.reconstruction.guard")  # each guard verdict, with both losses
    guard_log.setLevel(logging.INFO)
    guard_log.addHandler(logging.StreamHandler(sys.stdout))

    model = str(args.model or common.STORIES)
    targets = [float(t) for t in args.targets.split(",")]
    lambdas = [float(x) for x in args.lambdas.split(",")]
    refit_targets = [float(t) for t in args.refit_targets.split(",")] if args.refit_targets else targets

    def refit(target: float) -> bool:
        return any(abs(target - t) < 1e-9 for t in refit_targets)

    split = common.split_tinystories(Path(tempfile.mkdtemp(prefix="gisp-bench-recon-")), args.calib_fraction)
    dense = gisp.load_model(model)
    sets = common.eval_sets(dense.tokenizer, split.evaluation, args.seq_len, args.eval_windows, SETS)
    calibration_file = split.calibration
    if args.calibration == "mixed":
        calibration_file = mixed_file(dense.tokenizer, split, args)
    dense_ppl = common.perplexities(dense.model, sets)
    print("dense:", {k: round(v, 3) for k, v in dense_ppl.items()}, flush=True)

    def measure(m):
        return common.perplexities(m, sets)

    rows, costs = [], []
    for label, method, importance in methods(args):
        for seed in [0] if method in DETERMINISTIC else range(args.first_seed, args.first_seed + args.seeds):
            settings = gisp.PruneSettings(
                targets=targets,
                method=method,
                importance=importance,
                steps=args.steps,
                samples=args.samples,
                seq_len=args.seq_len,
                seed=seed,
                heldout=0,
                reconstruct="none",
                reconstruct_samples=args.reconstruct_samples,
            )
            started = time.perf_counter()
            trajectory, prepared = gisp.run(model, calibration_file, settings, measure=measure)
            prune_s = time.perf_counter() - started
            del prepared.loaded
            calibration = reconstruction_examples(prepared.calibration, prepared.extra, settings)
            rows += checkpoint_rows(label, seed, "none", None, trajectory.checkpoints)
            for r in trajectory.checkpoints:  # in the log before the refits, which may be stopped
                figures = ", ".join(f"{k} {v:.2f}" for k, v in r.metrics.items())
                print(f"{label} seed {seed} none {r.target:g}: {figures} (pruning {prune_s:.0f} s)", flush=True)
            for variant in args.variants.split(","):
                name, *extras = variant.split("+")
                for lam in lambdas if name != "bias" else [lambdas[0]]:
                    copied = copy.deepcopy(trajectory)
                    copied.checkpoints = [r for r in copied.checkpoints if refit(r.target)]
                    copied.settings = {
                        **copied.settings,
                        "reconstruct": name,
                        "reconstruct_lambda": lam,
                        "reconstruct_inputs": "inputs" in extras,
                        "reconstruct_residual": residual_share(extras),
                        "reconstruct_target": "local" if "local" in extras else "dense",
                    }
                    chosen = gisp.PruneSettings.from_dict(copied.settings)
                    started = time.perf_counter()
                    reconstruct_checkpoints(
                        dense,
                        calibration,
                        chosen,
                        copied,
                        printing_observer(f"{label} seed {seed} {variant}"),
                        measure,
                        guard="guard" in extras,
                    )
                    recon_s = time.perf_counter() - started  # includes measuring the checkpoints
                    rows += checkpoint_rows(label, seed, variant, lam, copied.checkpoints)
                    costs.append(
                        dict(
                            label=label, variant=variant, lam=lam, seconds=recon_s, checkpoints=len(copied.checkpoints)
                        )
                    )
                    at = {r["target"]: r["ppl"]["tinystories"] for r in rows[-len(copied.checkpoints) :]}
                    print(
                        f"{label:14s} seed {seed} {variant:12s} λ={lam:g}: {recon_s:5.1f} s; tinystories "
                        + ", ".join(f"{t:g}: {v:.2f}" for t, v in at.items()),
                        flush=True,
                    )
                    for r in copied.checkpoints:
                        if r.reconstruction_rejected:
                            print(f"  guard: {r.reconstruction_rejected}", flush=True)
            at = {
                r["target"]: r["ppl"]["tinystories"]
                for r in rows
                if r["label"] == label and r["seed"] == seed and r["variant"] == "none"
            }
            print(
                f"{label:14s} seed {seed} none: pruning {prune_s:.1f} s; tinystories "
                + ", ".join(f"{t:g}: {v:.2f}" for t, v in at.items()),
                flush=True,
            )
    cost = None if args.no_cost else cost_line(dense, sets, split, args)
    report(args, targets, dense_ppl, rows, costs, cost)
    common.write_json(
        dict(settings={k: str(v) for k, v in vars(args).items()}, dense=dense_ppl, rows=rows, costs=costs, cost=cost),
        args,
    )


def printing_observer(prefix: str):
    """An observer that prints each checkpoint's figures as soon as it is registered, so that a run
    stopped part way still leaves them in its log."""
    from gisp import PruneObserver

    class _Printer(PruneObserver):
        def on_checkpoint(self, record) -> None:
            figures = ", ".join(f"{k} {v:.2f}" for k, v in record.metrics.items())
            state = "rejected" if record.reconstruction_rejected else "refit"
            print(f"{prefix} {record.target:g} ({state}): {figures}", flush=True)

    return _Printer()


def mixed_file(tokenizer, split, args) -> Path:
    """The mixed calibration file; C4 calibration text is the second half of c4_sample.jsonl, after
    every record the held-out C4 windows read (checked)."""
    from gisp.data import read_records

    skip = len(read_records(common.C4)[1]) // 2
    read = common.heldout_records(tokenizer, common.C4, args.seq_len, args.eval_windows)
    if read > skip:
        sys.exit(f"the held-out C4 windows read {read} records, past the calibration half (from record {skip})")
    windows = max(args.samples, args.reconstruct_samples)
    path, counts = common.mixed_calibration(tokenizer, split.calibration.parent, split, windows, args.seq_len, 0, skip)
    print(
        f"mixed calibration: {counts} windows; held-out C4 reads records 0–{read - 1}, calibration C4 records "
        f"{skip}– of c4_sample.jsonl",
        flush=True,
    )
    return path


def checkpoint_rows(label: str, seed: int, variant: str, lam: float | None, records) -> list[dict]:
    return [
        dict(
            label=label,
            seed=seed,
            variant=variant,
            lam=lam,
            target=r.target,
            ppl=r.metrics,
            sparsity=r.sparsity,
            rejected=r.reconstruction_rejected,  # the guard kept the weights as cut (why, with both losses)
            kv_groups_kept=[len(k) for k in r.structure.attn],  # per layer: the allocation across layers
            mlp_kept=[len(k) for k in r.structure.mlp],
        )
        for r in records
    ]


def cost_line(dense, sets, split, args) -> dict:
    """Reconstruction time over one forward pass of the calibration set, and peak RSS over the
    weight bytes, for one lstsq checkpoint at 0.5 (stories260K)."""
    import torch

    import gisp
    from gisp.objectives import get_objective
    from gisp.reconstruction import get_reconstruction
    from gisp.reconstruction.stream import reconstruct

    settings = gisp.PruneSettings(
        targets=[0.5],
        steps=1,
        samples=args.samples,
        seq_len=args.seq_len,
        heldout=0,
        reconstruct="none",
        method="wanda-sp",
    )
    trajectory, prepared = gisp.run(str(args.model or common.STORIES), split.calibration, settings)
    batches = get_objective("perplexity").batches(prepared.calibration, settings.batch_size, 0)
    started = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            dense.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    forward = time.perf_counter() - started
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    reconstruct(
        dense.model, dense.adapter, trajectory.checkpoints[0].structure, batches, get_reconstruction("lstsq"), 1e-2
    )
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    weights = common.weight_bytes(dense.model)
    line = dict(
        recon_seconds=seconds,
        forward_seconds=forward,
        ratio=seconds / forward,
        peak_rss=rss,
        rss_before=rss_before,
        weight_bytes=weights,
        rss_over_weights=rss / weights,
    )
    print("cost:", {k: round(v, 3) if isinstance(v, float) else v for k, v in line.items()}, flush=True)
    return line


# hidden, layers, heads, KV heads, MLP channels, vocabulary (bench/speed.py's shapes; 1.1b is TinyLlama's)
RANDOM_SHAPES = {"100m": (768, 12, 12, 4, 2048, 32000), "1.1b": (2048, 22, 32, 4, 5632, 32000)}


def random_cost(args) -> None:
    """Time and peak RSS of refitting a random Llama (`RANDOM_SHAPES`) cut to half of every
    layer's units, on synthetic tokens, against one forward pass over the same tokens in the
    same process. The refit is the stream alone (`reconstruct`), without the stage's guard."""
    import torch

    from gisp.objectives import get_objective
    from gisp.reconstruction import get_reconstruction
    from gisp.reconstruction.stream import reconstruct
    from gisp.structure import Structure

    shape = RANDOM_SHAPES[args.cost_random]
    loaded = common.random_llama(*shape)
    examples = common.synthetic_examples(shape[-1], args.samples, args.seq_len)
    batches = get_objective("perplexity").batches(examples, 8, 0)
    full = Structure.full(loaded.adapter.spec)
    half = Structure(attn=[k[::2] for k in full.attn], mlp=[k[::2] for k in full.mlp])
    weights = common.weight_bytes(loaded.model)
    started = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            loaded.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    forward = time.perf_counter() - started
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    lines = [
        f"random-{args.cost_random} ({weights / 2**20:.0f} MiB fp32 weights), {args.samples}×{args.seq_len} tokens, "
        f"forward {forward:.2f} s, peak RSS before the refit {rss0 / 2**20:.0f} MiB"
    ]
    print(lines[0], flush=True)
    for name in args.cost_variants.split(","):
        started = time.perf_counter()
        if name == "stage":
            detail, whole = stage_cost(loaded, examples, half, started, args.cost_layers)
        else:
            reconstruct(loaded.model, loaded.adapter, half, batches, get_reconstruction(name), 1e-2)
            detail, whole = "", True
        seconds = time.perf_counter() - started
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        what = f"{seconds:.1f} s = {seconds / forward:.1f}× the forward" if whole else f"{seconds:.1f} s"
        lines.append(f"{name}: {what}; peak RSS {rss / 2**20:.0f} MiB = {rss / weights:.2f}× the weight bytes{detail}")
        print(lines[0] + "\n" + lines[-1], flush=True)  # each variant as it finishes: a long run leaves a trace
    header = common.run_header(f"random-{args.cost_random} reconstruction cost", args)
    common.emit("\n".join([header, *lines]) + "\n", args)


def stage_cost(loaded, examples, structure, started: float, stop_after: int = 0) -> tuple[str, bool]:
    """Run the reconstruction stage as a job runs it (every default of `PruneSettings`: its variant,
    the input-side refit, the residual share, the guard's checked fit, verdict and second pass) on one
    checkpoint of `structure`, and say where its time went. `stop_after` > 0 stops it once that many
    layers of the checked fit are done (a model too deep for the time at hand): the line then gives
    the seconds per layer measured and the peak RSS so far, not the whole stage. Returns the detail
    and whether the whole stage ran."""
    import gisp
    from gisp.errors import PruningStopped
    from gisp.pruner import PruneObserver, new_trajectory
    from gisp.reconstruction.stage import reconstruct_checkpoints
    from gisp.trajectory import CheckpointRecord

    settings = gisp.PruneSettings(targets=[0.5], samples=len(examples), heldout=0)
    trajectory = new_trajectory(loaded, settings, "synthetic")
    trajectory.checkpoints.append(CheckpointRecord.of(structure, loaded.adapter.spec, 0.5, 0, 0.0))
    layers = len(loaded.adapter.layers(loaded.model))
    done: list[float] = []  # when each layer of the checked fit (the first pass) ended

    class Clock(PruneObserver):
        def on_reconstruction_progress(self, record, layer: int, total: int) -> None:
            if layer <= layers and len(done) < layers:
                done.append(time.perf_counter())
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
            print(f"  stage: layer {layer}/{total} at {time.perf_counter() - started:.0f} s, peak RSS {rss:.0f} MiB")

        def should_stop(self) -> bool:
            return 0 < stop_after <= len(done)

    how = f"{settings.reconstruct}, inputs {settings.reconstruct_inputs}, residual {settings.reconstruct_residual}"
    try:
        reconstruct_checkpoints(loaded, examples, settings, trajectory, Clock())
    except PruningStopped:
        each = ", ".join(f"{b - a:.0f}" for a, b in itertools.pairwise([started, *done]))
        per_layer = (done[-1] - started) / len(done)
        return (
            f" (stopped after {len(done)} layers of the checked fit, as asked: "
            f"{per_layer:.1f} s a layer, {each} s; {how})",
            False,
        )
    record = trajectory.checkpoints[0]
    verdict = "kept" if record.reconstruction else f"rejected ({record.reconstruction_rejected})"
    return (
        f" ({how}; guard {verdict}; the checked fit {done[-1] - started:.1f} s, the verdict and the second pass "
        f"{time.perf_counter() - done[-1]:.1f} s)"
    ), True


def report(args, targets, dense, rows, costs, cost) -> None:
    labels = list(dict.fromkeys(r["label"] for r in rows))
    variants = list(dict.fromkeys((r["variant"], r["lam"]) for r in rows))
    text = [
        common.run_header(f"Reconstruction, {Path(str(args.model)).name if args.model else 'stories260K'}", args),
        f"Calibration: {args.samples} windows × {args.seq_len} tokens (seeded) from "
        + (
            "the first part of tinystories_val.txt"
            if args.calibration == "tinystories"
            else "a third each of the first part of tinystories_val.txt, wiki.valid.raw and the second half of "
            "c4_sample.jsonl (mixed)"
        )
        + f"; {args.steps} steps"
        + (f"; the refit fits on {args.reconstruct_samples} windows" if args.reconstruct_samples else "")
        + f". Evaluation: {args.eval_windows} windows × {args.seq_len} "
        "tokens of the rest of tinystories_val.txt, wiki.test.raw, c4_sample.jsonl. Perplexity; mean ± std "
        "over seeds; × dense in brackets.\n",
        "Dense: " + ", ".join(f"{k} {v:.2f}" for k, v in dense.items()) + "\n",
    ]
    for name in SETS:
        table = []
        for label in labels:
            for variant, lam in variants:
                mine = [r for r in rows if r["label"] == label and r["variant"] == variant and r["lam"] == lam]
                if not mine:
                    continue
                cells = [
                    f"{label} + {variant}"
                    + (f" λ={lam:g}" if lam is not None and variant.partition("+")[0] != "bias" else "")
                ]
                for t in targets:
                    values = [r["ppl"][name] for r in mine if abs(r["target"] - t) < 1e-9]
                    if not values:
                        cells.append("–")  # not refitted (--refit-targets)
                        continue
                    mean = sum(values) / len(values)
                    cells.append(f"{common.mean_std(values)} ({mean / dense[name]:.1f}×)")
                table.append(cells)
        text.append(f"**{name} perplexity**\n")
        text.append(common.markdown_table(["config"] + [f"{t:g}" for t in targets], table) + "\n")
    table = [[c["label"], c["variant"], f"{c['lam']:g}", f"{c['seconds']:.2f}", c["checkpoints"]] for c in costs]
    text.append("**reconstruction seconds (all checkpoints of one run)**\n")
    text.append(common.markdown_table(["method", "variant", "λ", "seconds", "checkpoints"], table) + "\n")
    if cost is not None:
        text.append(
            f"Cost of one lstsq checkpoint (0.5): {cost['recon_seconds']:.2f} s = {cost['ratio']:.1f}× one forward "
            f"pass over the calibration set ({cost['forward_seconds']:.2f} s); peak RSS "
            f"{cost['peak_rss'] / 2**20:.0f} MiB = {cost['rss_over_weights']:.0f}× the weight bytes "
            f"({cost['weight_bytes'] / 2**20:.2f} MiB; the process's fixed cost dominates on a model this small).\n"
        )
    common.emit("\n".join(text), args)


if __name__ == "__main__":
    main()
