"""Figures for docs/benchmarks.md from the benchmarks' JSON output: perplexity vs sparsity per
method (with the default reconstruction's curves from bench/reconstruction.py beside them), the
per-layer widths kept at the largest target, and perplexity vs schedule length."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETS = {"tinystories": "TinyStories (held-out part)", "wikitext2": "WikiText-2 test", "c4": "C4 sample"}
STYLE = {
    "gisp": dict(color="C3", lw=2.6),
    "oneshot": dict(color="C1"),
    "wanda-sp": dict(color="C0"),
    "magnitude": dict(color="C7"),
    "random": dict(color="C8"),
    "gisp fisher": dict(color="C9", ls="--"),
    "gisp reference-norm": dict(color="C4", ls="--"),
    "gisp protect[0,4]": dict(color="C2", ls="--"),
}
# bench/reconstruction.py's spelling of the engine's default before the input refit joined it, and
# of the default since 2026-12-03 (the same with reconstruct_inputs: q/k/v, gate/up refit too)
DEFAULT_RECONSTRUCTION = "lstsq-select-anchored+guard"
WITH_INPUTS = DEFAULT_RECONSTRUCTION + "+inputs"
WITH_RESIDUAL = WITH_INPUTS + "+residual"  # the default since 2026-12-04: the residual stream's drift too


def reconstruction_style(label: str) -> dict:
    """bench/reconstruction.py's `method:importance` label drawn in the colour of quality.py's same config
    (`gisp:fisher` as `gisp fisher`, `gisp:taylor` as `gisp`), else of its method."""
    method, _, importance = label.partition(":")
    name = f"{method} {importance}" if method == "gisp" and importance not in ("", "taylor") else method
    return dict(color=STYLE.get(name, STYLE.get(method, {})).get("color", "C5"))


def reconstruction_curves(data: list[dict], name: str, variant: str) -> list[tuple[str, list, list, list, int]]:
    """(label, sparsity targets with 0, mean, std, seeds) per method of bench/reconstruction.py's rows
    of one variant; each JSON's own dense figure is the 0 point."""
    curves = []
    for results in data:
        rows = [r for r in results["rows"] if r["variant"] == variant]
        for label in dict.fromkeys(r["label"] for r in rows):
            mine = [r for r in rows if r["label"] == label]
            targets = sorted({r["target"] for r in mine})
            xs, means, stds = [0.0], [results["dense"][name]], [0.0]
            for t in targets:
                values = [r["ppl"][name] for r in mine if r["target"] == t]
                xs.append(t)
                means.append(statistics.mean(values))
                stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            curves.append((label, xs, means, stds, len({r["seed"] for r in mine})))
    return curves


def _perplexity_axes(axes) -> tuple[list, list[str]]:
    """Log scale, one held-out set per panel; the first panel's legend entries, for a shared legend."""
    for ax, title in zip(axes, SETS.values(), strict=True):
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("sparsity (share of attention+MLP parameters removed)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("perplexity (log scale; mean ± std over seeds)")
    return axes[0].get_legend_handles_labels()


def perplexity_plot(data: dict, out: Path, reconstructed: list[dict] | None = None) -> None:
    """quality.py's methods without reconstruction (solid); with `reconstructed` (bench/reconstruction.py
    JSON) also each method + the default reconstruction (dotted, its own calibration: see the legend)."""
    targets = data["targets"]
    labels = list(dict.fromkeys(r["label"] for r in data["runs"]))
    fig, axes = plt.subplots(1, len(SETS), figsize=(5.2 * len(SETS), 5.2), sharex=True)
    for ax, name in zip(axes, SETS, strict=True):
        for index, label in enumerate(labels):
            runs = [r for r in data["runs"] if r["label"] == label]
            xs, means, stds = [0.0], [data["dense"][name]], [0.0]
            for t in targets:
                values = [r["targets"][str(t)]["perplexity"][name] for r in runs]
                xs.append(t)
                means.append(statistics.mean(values))
                stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            style = STYLE.get(label, dict(color=f"C{(index + 4) % 10}", ls="--" if " " in label else "-"))
            ax.errorbar(xs, means, yerr=stds, marker="o", ms=3.5, capsize=2, label=f"{label} (n={len(runs)})", **style)
        for label, xs, means, stds, seeds in reconstruction_curves(reconstructed or [], name, WITH_RESIDUAL):
            ax.errorbar(
                xs,
                means,
                yerr=stds,
                marker="s",
                ms=3,
                capsize=2,
                ls=":",
                lw=2,
                label=f"{label} + {WITH_RESIDUAL}† (n={seeds})",
                **reconstruction_style(label),
            )
    handles, names = _perplexity_axes(axes)
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), fontsize=9)
    title = "stories260K: perplexity vs sparsity (0 = dense)"
    if reconstructed:
        title += (
            "\n† dotted: + reconstruction, §8's runs (64×256 calibration, 16 steps, 32 eval windows: own dense point)"
        )
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.16 if reconstructed else 0.12, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def reconstruction_plot(data: list[dict], out: Path) -> None:
    """bench/reconstruction.py: each method without reconstruction (solid), with the default one (dotted)
    with the input-side refit too (dashed) and with the residual drift too (dash-dot, the default since
    2026-12-04), where the JSONs have them, from the same pruning runs and
    evaluation windows."""
    fig, axes = plt.subplots(1, len(SETS), figsize=(5.2 * len(SETS), 5.2), sharex=True)
    for ax, name in zip(axes, SETS, strict=True):
        seen = set()  # the same rows may be in two files (v4 and v5 share their none and +inputs runs)
        variants = (("none", "-", "o"), (DEFAULT_RECONSTRUCTION, ":", "s"), (WITH_INPUTS, "--", "^"))
        for variant, ls, marker in (*variants, (WITH_RESIDUAL, "-.", "D")):
            for label, xs, means, stds, seeds in reconstruction_curves(data, name, variant):
                if (label, variant) in seen:
                    continue
                seen.add((label, variant))
                ax.errorbar(
                    xs,
                    means,
                    yerr=stds,
                    marker=marker,
                    ms=3.5,
                    capsize=2,
                    ls=ls,
                    lw=2,
                    label=f"{label} + {variant} (n={seeds})",
                    **reconstruction_style(label),
                )
    handles, names = _perplexity_axes(axes)
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=9)
    fig.suptitle(
        "stories260K: without (solid), with the o_proj/down_proj refit (dotted), with the input refit too "
        "(dashed), and cancelling the residual stream's drift too, the default (dash-dot); 0 = dense"
    )
    fig.tight_layout(rect=(0, 0.05 + 0.03 * ((len(names) + 1) // 2), 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def layer_plot(data: dict, out: Path, labels: list[str], what: str = "kept per layer") -> None:
    arch = data["arch"]
    target = str(max(data["targets"]))
    available = [lab for lab in labels if any(r["label"] == lab for r in data["runs"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(len(available), 1)
    for k, label in enumerate(available):
        run = next(r for r in data["runs"] if r["label"] == label and r["seed"] == 0)
        checkpoint = run["targets"][target]
        for ax, key, total in (
            (axes[0], "kept_kv_groups", arch["num_kv_heads"]),
            (axes[1], "kept_channels", arch["intermediate_size"]),
        ):
            kept = checkpoint[key]
            xs = [i + (k - (len(available) - 1) / 2) * width for i in range(len(kept))]
            bars = ax.bar(xs, [v / total for v in kept], width, label=label, color=STYLE.get(label, {}).get("color"))
            ax.bar_label(bars, labels=[str(v) for v in kept], fontsize=7)
    for ax, title in zip(axes, ("attention: KV groups kept", "MLP: channels kept"), strict=True):
        ax.set_xticks(range(arch["num_layers"]))
        ax.set_xticklabels([f"layer {i}" for i in range(arch["num_layers"])])
        ax.set_ylim(0, 1.12)
        ax.set_ylabel(f"fraction kept (of {arch['num_kv_heads'] if 'KV' in title else arch['intermediate_size']})")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"stories260K at {float(target):g} sparsity: {what} (seed 0; labels = counts)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def schedule_plot(data: dict, out: Path) -> None:
    runs = data["runs"]
    steps = sorted({r["steps"] for r in runs})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, title in SETS.items():
        means = [statistics.mean(r["perplexity"][name] for r in runs if r["steps"] == s) for s in steps]
        ax.plot(steps, means, marker="o", label=title)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(steps)
    ax.set_xticklabels([str(s) for s in steps])
    ax.set_xlabel("schedule steps to 0.5 sparsity")
    ax.set_ylabel("perplexity at 0.5 (log)")
    ax2 = ax.twinx()
    ax2.plot(
        steps,
        [statistics.mean(r["prune_seconds"] for r in runs if r["steps"] == s) for s in steps],
        color="grey",
        ls=":",
        marker="s",
        label="pruning seconds",
    )
    ax2.set_ylabel("pruning seconds (grey, dotted)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    seeds = len({r["seed"] for r in runs})
    ax.set_title(f"gisp on stories260K: iterations vs held-out perplexity (mean of {seeds} seed(s))", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=Path, default=REPO / "bench" / "results" / "quality.json")
    parser.add_argument("--schedule", type=Path, default=REPO / "bench" / "results" / "schedule.json")
    parser.add_argument(
        "--reconstruction",
        type=Path,
        nargs="*",
        default=[REPO / "bench" / "results" / f"{n}.json" for n in ("reconstruction_v4", "reconstruction_v5_residual")],
        help="bench/reconstruction.py JSON whose default-reconstruction curves are drawn (missing files skipped)",
    )
    parser.add_argument("--tyr", type=Path, default=REPO / "bench" / "results" / "tyr.json", help="bench/tyr.py JSON")
    parser.add_argument("--tyr-labels", default="gisp;wanda-sp+lstsq;tyr;tyr hybrid", help="its configs, ;-separated")
    parser.add_argument("--outdir", type=Path, default=REPO / "docs")
    parser.add_argument(
        "--layer-methods", default="gisp;oneshot;wanda-sp;gisp fisher;gisp protect[0,4]", help="labels, ;-separated"
    )
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    reconstructed = [json.loads(p.read_text()) for p in args.reconstruction if p.is_file()]
    if reconstructed:
        reconstruction_plot(reconstructed, args.outdir / "reconstruction_vs_sparsity.png")
        print(f"wrote {args.outdir / 'reconstruction_vs_sparsity.png'}")
    else:
        print(
            "note: no reconstruction JSON found; "
            "run bench/reconstruction.py --json bench/results/reconstruction_v4.json"
        )
    if args.quality.is_file():
        quality = json.loads(args.quality.read_text())
        perplexity_plot(quality, args.outdir / "perplexity_vs_sparsity.png", reconstructed)
        layer_plot(quality, args.outdir / "layer_widths.png", args.layer_methods.split(";"))
        print(f"wrote {args.outdir / 'perplexity_vs_sparsity.png'}, {args.outdir / 'layer_widths.png'}")
    else:
        print(f"note: {args.quality} not found; run bench/quality.py --json {args.quality}")
    if args.tyr.is_file() and args.quality.is_file():  # bench/tyr.py records widths, not the architecture
        tyr_runs = json.loads(args.tyr.read_text())
        tyr_runs["arch"] = json.loads(args.quality.read_text())["arch"]
        what = "kept per layer, tyr's searched allocation beside GISP's ranking"
        layer_plot(tyr_runs, args.outdir / "layer_widths_tyr.png", args.tyr_labels.split(";"), what)
        print(f"wrote {args.outdir / 'layer_widths_tyr.png'}")
    if args.schedule.is_file():
        schedule_plot(json.loads(args.schedule.read_text()), args.outdir / "schedule.png")
        print(f"wrote {args.outdir / 'schedule.png'}")
    else:
        print(f"note: {args.schedule} not found; run bench/schedule.py --json {args.schedule}")


if __name__ == "__main__":
    main()
