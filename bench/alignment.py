"""Task alignment: accuracy on TinyStories next-sentence multiple choice after pruning stories260K,
calibrated with the `margin` objective on items of that task vs the `perplexity` objective on
generic text (C4), and on in-domain plain text (TinyStories) to separate objective from domain.

Task items for calibration come from the calibration part of tinystories_val.txt, evaluation
items from the rest, so no evaluated paragraph was seen during calibration.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import mc_tinystories  # noqa: E402


@dataclass
class Calibration:
    label: str
    objective: str
    data: Path
    samples: int


def next_sentence_builder():
    """The engine's TinyStories next-sentence builder (gisp.data.next_sentence); the local one in
    bench/ only where the engine predates it."""
    try:
        from gisp.data import next_sentence

        return next_sentence, "gisp.data.next_sentence (3 context sentences)"
    except ImportError:
        print("note: gisp.data.next_sentence not found; using bench/mc_tinystories.py")
        return mc_tinystories, "bench/mc_tinystories.py (≥2 context sentences)"


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--methods", default="gisp,wanda-sp")
    parser.add_argument("--targets", default="0.1,0.2,0.3,0.4,0.5")
    parser.add_argument("--importance", default="taylor", help="importance estimator for gisp")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--items", type=int, default=None, help="margin calibration items (4 sequences each)")
    parser.add_argument("--windows", type=int, default=None, help="perplexity calibration windows")
    parser.add_argument("--seq-len", type=int, default=256, help="perplexity calibration window length")
    parser.add_argument("--c4-docs", type=int, default=300, help="C4 documents to draw calibration windows from")
    parser.add_argument("--eval-items", type=int, default=None)
    args = parser.parse_args()
    args.seeds = args.seeds or (1 if args.quick else 2)
    args.steps = args.steps or (4 if args.quick else 8)
    args.items = args.items or (16 if args.quick else 64)
    args.windows = args.windows or (8 if args.quick else 32)
    args.eval_items = args.eval_items or (100 if args.quick else 200)
    common.setup(args)
    common.require_assets(common.STORIES, common.TINYSTORIES, common.C4)

    import gisp
    from gisp.data import build_examples, read_records
    from gisp.eval.perplexity import choice_accuracy

    tmp = Path(tempfile.mkdtemp(prefix="gisp-bench-alignment-"))
    split = common.split_tinystories(tmp)
    builder, builder_name = next_sentence_builder()
    calib_items = builder.build_items(split.calibration.read_text(), 1000, seed=1)
    eval_items = builder.build_items(split.evaluation.read_text(), args.eval_items, seed=2)
    calib_mc = builder.write_items(tmp / "next_sentence_calib.jsonl", calib_items)
    eval_mc = builder.write_items(tmp / "next_sentence_eval.jsonl", eval_items)
    print(f"task items: {len(calib_items)} for calibration ({calib_mc}), {len(eval_items)} for evaluation ({eval_mc})")

    base = gisp.load_model(str(common.STORIES))
    _, records = read_records(eval_mc)
    examples, _ = build_examples(base.tokenizer, records, "choice", len(records), 512, 0, 0)
    dense = choice_accuracy(base.model, examples)
    print(f"dense accuracy {dense:.3f} (chance 0.25)")

    c4_head = tmp / "c4_head.jsonl"  # the first documents only: tokenizing all of C4 per run is slow
    c4_head.write_text("".join(common.C4.read_text(encoding="utf-8").splitlines(keepends=True)[: args.c4_docs]))
    calibrations = [
        Calibration("margin on task items", "margin", calib_mc, args.items),
        Calibration("perplexity on C4 text", "perplexity", c4_head, args.windows),
        Calibration("perplexity on TinyStories text", "perplexity", split.calibration, args.windows),
    ]
    targets = [float(t) for t in args.targets.split(",")]
    runs = []
    for method in common.keep_registered(args.methods.split(","), "method"):
        for calibration in calibrations:
            for seed in range(args.seeds):
                settings = gisp.PruneSettings(
                    targets=targets,
                    objective=calibration.objective,
                    method=method,
                    steps=args.steps,
                    samples=calibration.samples,
                    seq_len=args.seq_len,
                    seed=seed,
                    importance=args.importance,
                    heldout=0,
                )
                measured = common.Measured()
                started = time.perf_counter()
                gisp.run(
                    str(common.STORIES),
                    calibration.data,
                    settings,
                    observer=common.eval_observer(measured),
                    measure=common.timed_measure(lambda m: {"accuracy": choice_accuracy(m, examples)}, measured),
                )
                runs.append(
                    {
                        "method": method,
                        "calibration": calibration.label,
                        "seed": seed,
                        "wall_seconds": time.perf_counter() - started,
                        "accuracy": {str(t): measured.metrics[t]["accuracy"] for t in targets},
                    }
                )
                print(
                    f"{method} / {calibration.label} / seed {seed}: {runs[-1]['wall_seconds']:.1f} s, "
                    f"{runs[-1]['accuracy']}",
                    flush=True,
                )

    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        for calibration in calibrations:
            mine = [r for r in runs if r["method"] == method and r["calibration"] == calibration.label]
            rows.append(
                [method, f"{calibration.label} (n={len(mine)})"]
                + [common.mean_std([r["accuracy"][str(t)] for r in mine], 3) for t in targets]
            )
    mode = "quick" if args.quick else "full"
    text = "\n".join(
        [
            common.run_header(f"Task alignment: next-sentence accuracy, stories260K ({mode} mode)", args),
            f"Task: pick the true next sentence of a TinyStories paragraph among 4 (3 from other paragraphs), "
            f"built by {builder_name}. Evaluation: {len(eval_items)} items from the held-out part, scored by the "
            f"lowest mean per-token NLL of the choice. Calibration: margin = {args.items} items from the "
            f"calibration part; perplexity = {args.windows} windows × {args.seq_len} tokens of the named text "
            f"(C4: its first {args.c4_docs} documents); "
            f"{args.steps} steps (gisp, {args.importance} importance), {args.seeds} seed(s). "
            f"Dense accuracy {dense:.3f}; chance 0.25.\n",
            common.markdown_table(["method", "calibration"] + [f"{t:g}" for t in targets], rows) + "\n",
        ]
    )
    common.emit(text, args)
    common.write_json({"settings": vars(args), "builder": builder_name, "dense_accuracy": dense, "runs": runs}, args)


if __name__ == "__main__":
    main()
