"""Compare pruning methods on held-out text: calibrate on the first half of a text file, measure
every checkpoint's perplexity on the second half (split at a blank line), print a JSON table.

    OMP_NUM_THREADS=1 python -m gisp.eval.compare MODEL TEXT --runs gisp:taylor,gisp:fisher,wanda-sp \\
        --targets 0.2,0.3,0.4,0.5 --samples 64 --seq-len 256 --steps 16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from torch import nn

from gisp.config import PruneSettings
from gisp.data import SequenceExample
from gisp.evaluation import sequence_perplexity, text_windows
from gisp.models import load_model
from gisp.pruner import PruneObserver
from gisp.run import run
from gisp.trajectory import CheckpointRecord


def split_text(text: str) -> tuple[str, str]:
    """(first half, second half), cut at the first blank line after the middle."""
    cut = text.find("\n\n", len(text) // 2)
    cut = len(text) // 2 if cut < 0 else cut + 2
    return text[:cut], text[cut:]


class _HeldoutPerplexity(PruneObserver):
    def __init__(self, windows: list[SequenceExample]) -> None:
        self.windows, self.perplexity = windows, {}

    def on_checkpoint(self, record: CheckpointRecord, model: nn.Module) -> dict[str, float]:
        self.perplexity[record.target] = sequence_perplexity(model, self.windows, batch_size=16).perplexity
        return {}


def compare(model: str, text_path: str | Path, runs: list[str], **settings) -> dict:
    """{"base": ppl, "runs": {"method[:importance]": {"target": ppl, ...}, ...}} on the second half."""
    calibration, heldout = split_text(Path(text_path).read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        calib_path, heldout_path = Path(tmp) / "calibration.txt", Path(tmp) / "heldout.txt"
        calib_path.write_text(calibration, encoding="utf-8")
        heldout_path.write_text(heldout, encoding="utf-8")
        loaded = load_model(model)
        windows = text_windows(loaded.tokenizer, heldout_path, settings.get("seq_len", 256))
        out: dict = {"base": sequence_perplexity(loaded.model, windows, batch_size=16).perplexity, "runs": {}}
        out["heldout_tokens"] = sum(len(w.input_ids) - 1 for w in windows)
        for spec in runs:
            method, _, importance = spec.partition(":")
            observer = _HeldoutPerplexity(windows)
            started = time.perf_counter()
            run(
                model,
                calib_path,
                PruneSettings(method=method, importance=importance or "taylor", heldout=0, **settings),
                observer,
            )
            out["runs"][spec] = {
                "perplexity": {str(t): p for t, p in sorted(observer.perplexity.items())},
                "seconds": time.perf_counter() - started,
            }
    return out


def main(argv: list[str] | None = None) -> int:
    from gisp.cli import _floats

    parser = argparse.ArgumentParser(prog="python -m gisp.eval.compare", description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("text", help=".txt file: first half calibrates, second half measures")
    parser.add_argument("--runs", default="gisp:taylor,gisp:fisher,wanda-sp", help="method[:importance],...")
    parser.add_argument("--targets", type=_floats, default=[0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--normalization", default="param")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = compare(
        args.model,
        args.text,
        [r for r in args.runs.split(",") if r],
        targets=args.targets,
        samples=args.samples,
        seq_len=args.seq_len,
        steps=args.steps,
        normalization=args.normalization,
        seed=args.seed,
    )
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
