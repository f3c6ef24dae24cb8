"""The headline ratios of docs/benchmarks.md, computed from the benchmarks' JSON in bench/results/:
gisp vs wanda-sp and oneshot perplexity at 0.4/0.5 (without reconstruction, and both with the
default reconstruction), step time over the floor, peak memory over weight bytes, inference
speedup at 0.5."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SETS = ("tinystories", "wikitext2", "c4")
# bench/reconstruction.py's spelling of the engine's default before the input refit joined it, and
# of the default since 2026-12-03 (the same with reconstruct_inputs: q/k/v, gate/up refit too)
DEFAULT_RECONSTRUCTION = "lstsq-select-anchored+guard"
WITH_INPUTS = DEFAULT_RECONSTRUCTION + "+inputs"
WITH_RESIDUAL = WITH_INPUTS + "+residual"  # the default since 2026-12-04: the residual stream's drift too


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def mean_ppl(runs: list[dict], label: str, target: float, text: str) -> float:
    return statistics.mean(r["targets"][str(target)]["perplexity"][text] for r in runs if r["label"] == label)


def mean_row_ppl(rows: list[dict], label: str, variant: str, target: float, text: str) -> float:
    """Mean over seeds of bench/reconstruction.py's rows."""
    return statistics.mean(
        r["ppl"][text]
        for r in rows
        if r["label"] == label and r["variant"] == variant and abs(r["target"] - target) < 1e-9
    )


def reconstruction_lines(
    data: dict, mine: str = "gisp:fisher", theirs: str = "wanda-sp", variant: str = DEFAULT_RECONSTRUCTION
) -> list[str]:
    """`mine` / `theirs`, both with `variant`, at 0.4 and 0.5, and `mine` against dense and against
    itself unreconstructed (same pruning runs, same windows)."""
    rows, dense = data["rows"], data["dense"]
    present = {(r["label"], r["variant"]) for r in rows}
    if not {(mine, variant), (theirs, variant), (mine, "none")} <= present:
        return []
    seeds = len({r["seed"] for r in rows if r["label"] == mine})
    lines = []
    for target in (0.4, 0.5):
        parts = []
        for text in SETS:
            a, b, cut = (
                mean_row_ppl(rows, label, which, target, text)
                for label, which in ((mine, variant), (theirs, variant), (mine, "none"))
            )
            parts.append(
                f"{text} {a:.1f}/{b:.1f} = **{a / b:.2f}×** ({mine} {a / dense[text]:.1f}× dense, "
                f"{cut / dense[text]:.1f}× unreconstructed)"
            )
        lines.append(
            f"- perplexity {mine} / {theirs}, both + {variant}, at {target} "
            f"(mean of {seeds} seeds): " + "; ".join(parts)
        )
    return lines


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    lines = []
    quality = load("quality")
    if quality:
        for other in ("wanda-sp", "oneshot"):
            for target in (0.4, 0.5):
                parts = []
                for text in ("tinystories", "wikitext2", "c4"):
                    mine, theirs = (mean_ppl(quality["runs"], lab, target, text) for lab in ("gisp", other))
                    parts.append(f"{text} {mine:.1f}/{theirs:.1f} = **{mine / theirs:.2f}×**")
                lines.append(f"- perplexity gisp / {other} at {target}: " + "; ".join(parts))
        for label in ("gisp fisher",):
            if any(r["label"] == label for r in quality["runs"]):
                parts = []
                for text in ("tinystories", "wikitext2", "c4"):
                    mine, theirs = (mean_ppl(quality["runs"], lab, 0.5, text) for lab in (label, "wanda-sp"))
                    parts.append(f"{text} **{mine / theirs:.2f}×**")
                lines.append(f"- perplexity {label} / wanda-sp at 0.5: " + "; ".join(parts))
    reconstruction = load("reconstruction_v4")  # v3 and earlier: measured with the defective view
    if reconstruction:
        lines += reconstruction_lines(reconstruction)
        lines += reconstruction_lines(reconstruction, variant=WITH_INPUTS)
    residual = load("reconstruction_v5_residual")
    if residual:
        lines += reconstruction_lines(residual, variant=WITH_RESIDUAL)
    for name in ("speed", "speed_1b"):
        speed = load(name)
        for r in speed["results"] if speed else []:
            steps = r["step_seconds"]
            mean_ratio = statistics.mean(steps) / r["floor_seconds"]
            weights = r["weight_bytes"] / 2**20
            lines.append(
                f"- {r['name']} ({r['importance']}, {r['samples']}×{r['seq_len']} tokens): step 1 / floor "
                f"**{steps[0] / r['floor_seconds']:.2f}×**, mean step / floor {mean_ratio:.2f}×; "
                f"peak RSS {r['peak_rss_mib']:.0f} MiB = **{r['peak_rss_mib'] / weights:.2f}×** the weights "
                f"({weights:.1f} MiB), {(r['peak_rss_mib'] - r['rss_after_imports_mib']) / weights:.2f}× above the "
                "import baseline"
            )
    inference = load("inference")
    if inference:
        for model in dict.fromkeys(r["model"] for r in inference["results"]):
            rows = {r["checkpoint"]: r for r in inference["results"] if r["model"] == model}
            dense, half = rows.get("dense"), rows.get("0.5")
            if dense and half:
                ratio = dense["parameters"] / half["parameters"]
                prefill = half["prefill_tokens_per_s"] / dense["prefill_tokens_per_s"]
                decode = half["decode_tokens_per_s"] / dense["decode_tokens_per_s"]
                lines.append(
                    f"- {model} at 0.5: prefill **{prefill:.2f}×**, decode **{decode:.2f}×** the dense tokens/s "
                    f"(parameters {ratio:.2f}× fewer)"
                )
    print("\n".join(lines) or "no results in bench/results/ yet")


if __name__ == "__main__":
    main()
