"""T'yr-style allocation search against GISP (stories260K, or --model): held-out perplexity at 0.2–0.5 on
TinyStories (the part of tinystories_val.txt no calibration saw), WikiText-2 test and C4, and
next-sentence accuracy on TinyStories paragraphs of that held-out part, with the wall time and
peak RSS of each run.

Configurations: gisp (fisher, 16 steps) without and with the reconstruction stage's refit
(lstsq, lstsq-select, and `gisp+default`: the stage's current default, guarded), wanda-sp with
lstsq, tyr from the uniform allocation, tyr with its re-solve anchored to the dense weights
(`tyr_anchor`), tyr's local pruner alone (its ladders' centre, no search), and the hybrid (tyr
seeded with GISP's one-shot allocation). Every run is its own process, so its peak RSS is its own; all
run with one torch thread. Calibration: 64 windows × 256 tokens of the first quarter of
tinystories_val.txt (`common.split_tinystories`, as bench/quality.py). `--tyr name=value,...`
overrides tyr settings (a reduced search budget for a larger model); `--steps` is gisp's.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SETS = ("tinystories", "wikitext2", "c4")
NS = "next_sentence"  # accuracy key beside the perplexities
# label -> settings over the shared ones
CONFIGS: dict[str, dict] = {
    "gisp": dict(method="gisp", reconstruct="none"),
    # every label below but +residual pins reconstruct_residual 0: what its committed results were measured with
    "gisp+lstsq": dict(method="gisp", reconstruct="lstsq", reconstruct_inputs=False, reconstruct_residual=0.0),
    "gisp+lstsq-select": dict(
        method="gisp", reconstruct="lstsq-select", reconstruct_inputs=False, reconstruct_residual=0.0
    ),
    # the reconstruction stage's default before the input refit became part of it (labels stay
    # what the committed results were measured with): lstsq-select-anchored + guard, o_proj/down_proj
    "gisp+default": dict(
        method="gisp", reconstruct="lstsq-select-anchored", reconstruct_inputs=False, reconstruct_residual=0.0
    ),
    # ... and with q/k/v, gate/up refit too: the stage's default since 2026-12-03
    "gisp+default+inputs": dict(
        method="gisp", reconstruct="lstsq-select-anchored", reconstruct_inputs=True, reconstruct_residual=0.0
    ),
    # ... and cancelling the residual stream's drift too (reconstruct_residual 1)
    "gisp+default+inputs+residual": dict(
        method="gisp", reconstruct="lstsq-select-anchored", reconstruct_inputs=True, reconstruct_residual=1.0
    ),
    "gisp+default kv>=1": dict(method="gisp", reconstruct_inputs=False, reconstruct_residual=0.0, min_kv_groups=1),
    "gisp+default+inputs kv>=1": dict(
        method="gisp", reconstruct_inputs=True, reconstruct_residual=0.0, min_kv_groups=1
    ),
    "wanda-sp+lstsq": dict(method="wanda-sp", reconstruct="lstsq", reconstruct_inputs=False, reconstruct_residual=0.0),
    # the stage's current default (inputs, residual 1), and with its local target (reconstruct_target)
    "wanda-sp+default": dict(method="wanda-sp"),
    "oneshot+default": dict(method="oneshot"),  # GISP's ranking in one step (the hybrid's start), the stage's default
    "gisp+default+local": dict(method="gisp", reconstruct_target="local"),
    "wanda-sp+default+local": dict(method="wanda-sp", reconstruct_target="local"),
    "tyr local only": dict(method="tyr", tyr_rounds=1, tyr_generations=0),
    "tyr": dict(method="tyr", tyr_anchor=False),
    "tyr anchored": dict(method="tyr", tyr_anchor=True),
    "tyr hybrid": dict(method="tyr", tyr_start="gisp"),
    # tyr's structures refit by the reconstruction stage (its default: select inside a layer, anchored,
    # inputs, the residual drift), or by its anchored refit of tyr's own units (no select)
    # (both pin tyr_finalists 0, what their committed results were measured with: the search's best, unjudged)
    "tyr+stage": dict(method="tyr", tyr_refit="stage", tyr_finalists=0),
    "tyr+stage-anchored": dict(method="tyr", tyr_refit="stage", reconstruct="lstsq-anchored", tyr_finalists=0),
    # ... the stage judging the search's finalists and its start (tyr_finalists at its default, 8)
    "tyr+stage+finalists": dict(method="tyr", tyr_refit="stage"),
    # ... started from GISP's one-shot allocation (the hybrid), its start judged beside the finalists
    "tyr hybrid+stage+finalists": dict(method="tyr", tyr_start="gisp", tyr_refit="stage"),
}


def child(spec: dict) -> None:
    """One run: prune, measure every checkpoint on the held-out sets, print one JSON line."""
    common.quiet_transformers()
    import torch

    torch.set_num_threads(1)
    import gisp

    split_eval, calibration = Path(spec["evaluation"]), Path(spec["calibration"])
    model = spec["model"]
    base = gisp.load_model(model)
    sets = common.eval_sets(base.tokenizer, split_eval, spec["seq_len"], spec["eval_windows"], SETS)
    choices = next_sentence_examples(base.tokenizer, split_eval, spec["ns_items"])
    del base
    settings = gisp.PruneSettings(
        targets=spec["targets"],
        samples=spec["samples"],
        seq_len=spec["seq_len"],
        seed=spec["seed"],
        heldout=0,
        steps=spec["steps"],
        **spec["settings"],
    )
    measured = common.Measured()
    started = time.perf_counter()
    trajectory, _ = gisp.run(
        model,
        calibration,
        settings,
        observer=common.eval_observer(measured),
        measure=common.timed_measure(lambda m: measure(m, sets, choices), measured),
    )
    wall = time.perf_counter() - started - measured.checkpoint_seconds
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    out = {
        "wall_seconds": wall,
        "peak_rss_mib": rss,
        "dense": trajectory.dense_metrics,
        "nested": trajectory.nested,
        "reconstruct": settings.reconstruct if settings.method != "tyr" or settings.tyr_refit == "stage" else "tyr",
        "targets": {
            str(r.target): {
                "sparsity": r.sparsity,
                "perplexity": {k: v for k, v in measured.metrics[r.target].items() if k != NS},
                "next_sentence": measured.metrics[r.target][NS],
                "kept_kv_groups": r.structure.layer_widths()[0],
                "kept_channels": r.structure.layer_widths()[1],
            }
            for r in trajectory.checkpoints
        },
    }
    print("RESULT " + json.dumps(out), flush=True)


def next_sentence_examples(tokenizer, evaluation: Path, items: int) -> list:
    """Next-sentence items (4 choices) from the held-out TinyStories part, built as bench/alignment.py
    builds its evaluation items (seed 2) and tokenized as choice examples."""
    from gisp.data import build_examples, next_sentence, read_records

    path = next_sentence.write_items(
        Path(tempfile.mkdtemp(prefix="gisp-bench-tyr-ns-")) / "items.jsonl",
        next_sentence.build_items(evaluation.read_text(encoding="utf-8"), items, seed=2),
    )
    _, records = read_records(path)
    examples, _ = build_examples(tokenizer, records, "choice", len(records), 512, 0, 0)
    return examples


def measure(model, sets: dict[str, list], choices: list) -> dict[str, float]:
    """Perplexity on each held-out text, and next-sentence accuracy (key NS)."""
    from gisp.eval.perplexity import choice_accuracy

    return common.perplexities(model, sets) | {NS: choice_accuracy(model, choices)}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    common.add_split_run_arguments(parser, seeds=1)
    parser.add_argument("--ns-items", type=int, default=200, help="next-sentence items (held-out TinyStories)")
    parser.add_argument(
        "--merge", nargs="+", type=Path, default=None, help="run nothing: one report of the runs in these --json files"
    )
    parser.add_argument("--reference", default="gisp+default", help="config the ratio table divides by")
    parser.add_argument("--tyr", default="", help="tyr settings over the defaults, e.g. tyr_rounds=2,tyr_generations=4")
    args = parser.parse_args()
    if args.quick:
        args.targets, args.samples, args.eval_windows = "0.5", 16, 8
    common.setup(args)
    if args.merge:
        merge(args)
        return
    model = args.model or common.STORIES
    common.require_assets(model, common.TINYSTORIES, common.WIKITEXT, common.C4)
    overrides = tyr_overrides(args.tyr)
    targets = [float(t) for t in args.targets.split(",")]
    split = common.split_tinystories(Path(tempfile.mkdtemp(prefix="gisp-bench-tyr-")))
    labels = args.configs.split(",")
    unknown = [label for label in labels if label not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; known: {', '.join(CONFIGS)}")
    runs = []
    keep = out_size(args)
    for seed in range(args.first_seed, args.first_seed + args.seeds):  # seed-major: a cut-off run keeps whole seeds
        for label in labels:
            settings = CONFIGS[label] | (overrides if CONFIGS[label]["method"] == "tyr" else {})
            result = run_child(child_spec(args, split, model, targets, seed, settings), label)
            if result is None:
                continue
            runs.append(result)
            top = result["targets"][str(max(targets))]
            print(
                f"{label:16s} seed {seed}: {result['wall_seconds']:6.1f} s, {result['peak_rss_mib']:.0f} MiB; "
                f"at {max(targets)} (sparsity {top['sparsity']:.4f}): "
                + ", ".join(f"{k} {v:.2f}" for k, v in top["perplexity"].items()),
                flush=True,
            )
            # written after every run, so a long invocation cut short keeps what it measured; the
            # report replaces this invocation's previous one (emit appends)
            truncate_out(args, keep)
            report(args, targets, runs)
            common.write_json(
                {"settings": {k: str(v) for k, v in vars(args).items()}, "targets": targets, "runs": runs}, args
            )


def out_size(args) -> int:
    """Bytes of `--out` before this invocation wrote to it."""
    return args.out.stat().st_size if args.out is not None and args.out.exists() else 0


def truncate_out(args, size: int) -> None:
    if args.out is not None and args.out.exists():
        os.truncate(args.out, size)


def tyr_overrides(text: str) -> dict:
    """`name=value,...` as tyr settings (lists as `a/b`: tyr_stage_samples=2/8), checked by PruneSettings."""
    import gisp

    out: dict = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if not name.startswith("tyr_"):
            raise SystemExit(f"--tyr takes tyr_* settings, not {name!r}")
        parts = [json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v for v in value.split("/")]
        out[name] = parts if name in ("tyr_stage_samples", "tyr_stage_keep") else parts[0]
    gisp.PruneSettings(targets=[0.5], method="tyr", **out)  # a bad name or value fails here, before any run
    return out


def merge(args) -> None:
    """One report of runs measured by separate invocations with the same calibration and windows:
    the runs of `--configs`, the targets of `--targets` that every one has; a (config, seed) twice
    is an error."""
    runs, seen = [], set()
    for path in args.merge:
        for run in json.loads(path.read_text())["runs"]:
            if run["label"] not in args.configs.split(","):
                continue
            key = (run["label"], run["seed"])
            if key in seen:
                raise SystemExit(f"{key} is in more than one of the merged files")
            seen.add(key)
            runs.append(run | {"source": path.name})
    targets = [float(t) for t in args.targets.split(",") if all(t in r["targets"] for r in runs)]
    if not targets:
        raise SystemExit("no target of --targets is in every merged run")
    print("merged: " + ", ".join(f"{r['label']} seed {r['seed']} ({r['source']})" for r in runs))
    report(args, targets, runs)
    common.write_json({"merged": [str(p) for p in args.merge], "targets": targets, "runs": runs}, args)


def child_spec(args, split: common.Split, model: Path, targets: list[float], seed: int, settings: dict) -> dict:
    """What one `--child` run needs: the calibration split, held-out windows, schedule and settings."""
    return dict(
        evaluation=str(split.evaluation),
        calibration=str(split.calibration),
        targets=targets,
        samples=args.samples,
        seq_len=args.seq_len,
        eval_windows=args.eval_windows,
        ns_items=args.ns_items,
        seed=seed,
        steps=args.steps,
        model=str(model),
        settings=settings,
    )


def run_child(spec: dict, label: str) -> dict | None:
    """One run in a fresh process (its peak RSS its own); None, with the reason printed, if it failed."""
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print(
            f"{label} seed {spec['seed']} failed (exit status {done.returncode}):\n"
            f"{done.stderr[-3000:]}{done.stdout[-1000:]}",
            flush=True,
        )
        return None
    return json.loads(lines[-1][len("RESULT ") :]) | {"label": label, "seed": spec["seed"]}


def report(args, targets: list[float], runs: list[dict]) -> None:
    if not runs:
        return
    dense = next((r["dense"] for r in runs if NS in r["dense"]), runs[0]["dense"])
    labels = list(dict.fromkeys(r["label"] for r in runs))
    title = f"{getattr(args, 'title', 'tyr vs gisp')}, {Path(str(args.model or common.STORIES)).name}"
    text = [
        common.run_header(title, args),
        f"Calibration: {args.samples} windows × {args.seq_len} tokens of the first quarter of "
        f"tinystories_val.txt; gisp {args.steps} steps; tyr overrides: {args.tyr or 'none'}; "
        f"evaluation: the first {args.eval_windows} windows × {args.seq_len} tokens of the "
        "rest of it, of wiki.test.raw and of c4_sample.jsonl. Perplexity (× dense in brackets), mean ± std over "
        f"seeds (n). Dense: " + ", ".join(f"{k} {v:.2f}" for k, v in dense.items()) + "\n",
    ]
    for name in SETS:
        rows = []
        for label in labels:
            mine = [r for r in runs if r["label"] == label]
            row: list[object] = [f"{label} (n={len(mine)})"]
            for t in targets:
                values = [r["targets"][str(t)]["perplexity"][name] for r in mine]
                ratio = sum(values) / len(values) / dense[name]
                row.append(f"{common.mean_std(values)} ({ratio:.2f}×)")
            rows.append(row)
        text.append(f"**{name} perplexity**\n")
        text.append(common.markdown_table(["config"] + [f"{t:g}" for t in targets], rows) + "\n")
    rows = [
        [f"{label} (n={len(mine)})"] + [common.mean_std([r["targets"][str(t)][NS] for r in mine], 3) for t in targets]
        for label in labels
        for mine in [[r for r in runs if r["label"] == label and NS in r["targets"][str(targets[0])]]]
        if mine  # runs measured before the column existed have none
    ]
    text.append(
        f"**next-sentence accuracy** ({args.ns_items} items from the held-out TinyStories part, 4 choices, "
        f"chance 0.25; dense {dense.get(NS, float('nan')):.3f})\n"
    )
    text.append(common.markdown_table(["config"] + [f"{t:g}" for t in targets], rows) + "\n")
    if args.reference in labels:
        text.append(ratio_table(args.reference, labels, targets, runs))
    rows = []
    top = str(max(targets))
    for label in labels:
        mine = [r for r in runs if r["label"] == label]
        first = mine[0]["targets"][top]
        rows.append(
            [
                label,
                mine[0].get("reconstruct", "?"),
                ",".join(sorted({t for r in mine for t in r["targets"]})),
                common.mean_std([r["wall_seconds"] for r in mine], 1),
                common.mean_std([r["peak_rss_mib"] for r in mine], 0),
                f"{first['sparsity']:.4f}",
                "yes" if mine[0]["nested"] else "no",
                str(first["kept_kv_groups"]),
                str(first["kept_channels"]),
            ]
        )
    text.append(f"**cost (each run's targets, measurement excluded) and shape at {top} (first seed)**\n")
    headers = [
        "config",
        "refit",
        "targets run",
        "wall s",
        "peak RSS MiB",
        f"sparsity @{top}",
        "nested",
        "KV groups/layer",
        "channels/layer",
    ]
    text.append(common.markdown_table(headers, rows) + "\n")
    common.emit("\n".join(text), args)


def ratio_table(reference: str, labels: list[str], targets: list[float], runs: list[dict]) -> str:
    """Each config's mean perplexity over its seeds divided by the reference config's, per text and
    target (seeds the two have in common only, so a cut-off run still compares like with like)."""

    def mean(label: str, seeds: set[int], t: float, name: str) -> float:
        values = [r["targets"][str(t)]["perplexity"][name] for r in runs if r["label"] == label and r["seed"] in seeds]
        return sum(values) / len(values)

    rows = []
    for label in labels:
        if label == reference:
            continue
        seeds = {r["seed"] for r in runs if r["label"] == label} & {r["seed"] for r in runs if r["label"] == reference}
        if not seeds:
            continue
        row: list[object] = [f"{label} (seeds {','.join(map(str, sorted(seeds)))})"]
        for t in targets:
            row.append(" / ".join(f"{mean(label, seeds, t, n) / mean(reference, seeds, t, n):.2f}×" for n in SETS))
        rows.append(row)
    head = f"**mean perplexity ÷ {reference}'s** (TinyStories / WikiText-2 / C4; below 1: better)\n"
    return head + "\n" + common.markdown_table(["config"] + [f"{t:g}" for t in targets], rows) + "\n"


if __name__ == "__main__":
    main()
