"""Shared pieces of the benchmark scripts: asset paths, the explicit calibration/evaluation split,
evaluation sets, an observer that measures every checkpoint, code-built random models, and
markdown/JSON output. Benchmarks print figures; they never assert on timings."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GISP_SHARED", REPO.parent / "shared")).resolve()
STORIES = SHARED / "models" / "stories260K"
TINYSTORIES = SHARED / "data" / "tinystories" / "tinystories_val.txt"
WIKITEXT = SHARED / "data" / "wikitext-2-raw" / "wiki.test.raw"
C4 = SHARED / "data" / "c4" / "c4_sample.jsonl"


def require_assets(*paths: Path) -> None:
    """Exit with a clear message when a shared asset is missing (GISP_SHARED points elsewhere)."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.exit(f"missing shared assets (set GISP_SHARED): {', '.join(missing)}")


def quiet_transformers() -> None:
    """Keep tables readable: no progress bars or long-sequence warnings from transformers."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes in a few minutes on 2 cores")
    parser.add_argument("--out", type=Path, default=None, help="append the markdown table(s) to this file")
    parser.add_argument("--json", type=Path, default=None, help="write the raw results as JSON here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed for comparability)")
    return parser


def add_split_run_arguments(parser: argparse.ArgumentParser, seeds: int = 3) -> None:
    """The options of the scripts measured on the TinyStories split (bench/tyr.py and those that share
    its calibration and windows), so their defaults cannot drift apart."""
    parser.add_argument("--targets", default="0.2,0.3,0.4,0.5")
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--eval-windows", type=int, default=48)
    parser.add_argument("--steps", type=int, default=16, help="gisp's schedule steps")
    parser.add_argument("--model", type=Path, default=None, help="model folder or .gguf (default stories260K)")


def setup(args: argparse.Namespace) -> None:
    quiet_transformers()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)


# ---------------------------------------------------------------- registries


def registered(kind: str) -> list[str]:
    if kind == "method":
        from gisp.methods import method_names

        return method_names()
    from gisp.importance import estimator_names

    return estimator_names()


def keep_registered(names: Iterable[str], kind: str) -> list[str]:
    """The names the engine knows; prints a note for each one it does not (yet)."""
    known = registered(kind)
    kept = []
    for name in names:
        if name in known:
            kept.append(name)
        else:
            print(f"note: {kind} {name!r} is not registered in gisp (have: {', '.join(known)}); skipped")
    return kept


# ---------------------------------------------------------------- data


@dataclass
class Split:
    calibration: Path
    evaluation: Path
    calibration_chars: int
    evaluation_chars: int


def split_tinystories(out_dir: Path, fraction: float = 0.25) -> Split:
    """Write the first `fraction` of tinystories_val.txt (cut at a blank line) as the calibration
    file and the rest as the evaluation file, so held-out perplexity never sees calibration text."""
    text = TINYSTORIES.read_text(encoding="utf-8")
    cut = text.find("\n\n", int(len(text) * fraction))
    cut = len(text) // 2 if cut < 0 else cut + 2
    out_dir.mkdir(parents=True, exist_ok=True)
    calibration, evaluation = out_dir / "tinystories_calib.txt", out_dir / "tinystories_eval.txt"
    calibration.write_text(text[:cut], encoding="utf-8")
    evaluation.write_text(text[cut:], encoding="utf-8")
    return Split(calibration, evaluation, cut, len(text) - cut)


WIKITEXT_VALID = SHARED / "data" / "wikitext-2-raw" / "wiki.valid.raw"
MIXED_SOURCES = ("tinystories", "wikitext2", "c4")


def mixed_calibration(
    tokenizer, out_dir: Path, split: Split, windows: int, seq_len: int, seed: int, c4_skip: int
) -> tuple[Path, dict[str, int]]:
    """A .jsonl calibration file of exactly `windows` windows drawn equally (seeded, the remainder
    to the first sources) from three texts no held-out window comes from: the calibration part of
    TinyStories (`split.calibration`), WikiText-2 *validation* (the test file is held out) and the
    C4 records after the first `c4_skip` (the held-out C4 windows read the records before them).

    Each record is one window: BOS (which the engine's text stream puts before every record) and
    seq_len - 1 tokens of the source, cut at token boundaries and checked to re-tokenize to exactly
    that length, so the engine's `samples` = `windows` draw takes every window and no window
    straddles two sources."""
    from gisp.data import read_records

    c4_records = read_records(C4)[1][c4_skip:]
    texts = {
        "tinystories": split.calibration.read_text(encoding="utf-8"),
        "wikitext2": WIKITEXT_VALID.read_text(encoding="utf-8"),
        "c4": "\n\n".join(getattr(r, "text", "") for r in c4_records),
    }
    length = seq_len - (1 if tokenizer.bos_token_id is not None else 0)
    counts = {
        name: windows // len(MIXED_SOURCES) + (i < windows % len(MIXED_SOURCES)) for i, name in enumerate(MIXED_SOURCES)
    }
    rng = random.Random(seed)
    lines = []
    for name in MIXED_SOURCES:
        text = texts[name]
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        starts = [k * length for k in range(len(offsets) // length)]
        rng.shuffle(starts)
        picked = []
        for start in starts:
            piece = text[offsets[start][0] : offsets[start + length - 1][1]]
            if len(tokenizer(piece, add_special_tokens=False)["input_ids"]) == length:
                picked.append(piece)
            if len(picked) == counts[name]:
                break
        if len(picked) < counts[name]:
            sys.exit(f"{name}: only {len(picked)} of {counts[name]} calibration windows re-tokenize exactly")
        lines += [json.dumps({"text": piece}) for piece in picked]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "mixed_calibration.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, counts


def eval_sets(tokenizer, evaluation: Path, seq_len: int, windows: int, names: Sequence[str]) -> dict[str, list]:
    """First `windows` non-overlapping windows of each named held-out text."""
    sources = {"tinystories": evaluation, "wikitext2": WIKITEXT, "c4": C4}
    return {name: text_windows(tokenizer, sources[name], seq_len, windows) for name in names}


def text_windows(tokenizer, path: Path, seq_len: int, windows: int) -> list:
    """The first `windows` windows of a file read as one token stream (BOS before each document:
    the whole file for .txt/.raw, each record for .jsonl). Only the needed prefix is tokenized."""
    from gisp.data import SequenceExample

    stream = _prefix(tokenizer, path, seq_len, windows)[1]
    count = min(windows, len(stream) // seq_len)
    chunks = [stream[i * seq_len : (i + 1) * seq_len] for i in range(count)]
    return [SequenceExample(chunk, list(chunk)) for chunk in chunks]


def heldout_records(tokenizer, path: Path, seq_len: int, windows: int) -> int:
    """How many leading records of a .jsonl file `text_windows` reads for its held-out windows:
    text calibrated on must come from the records after them."""
    return len(_prefix(tokenizer, path, seq_len, windows)[0])


def _prefix(tokenizer, path: Path, seq_len: int, windows: int) -> tuple[list, list[int]]:
    """The records read and their token stream for `windows` windows (the file's prefix)."""
    from gisp.data import read_records
    from gisp.data.examples import text_stream
    from gisp.data.records import TextRecord

    need = windows * seq_len
    budget = need * 8  # characters; doubled until enough tokens
    while True:
        if path.suffix == ".jsonl":
            records, size = [], 0
            for record in read_records(path)[1]:
                records.append(record)
                size += len(getattr(record, "text", ""))
                if size >= budget:
                    break
        else:
            records = [TextRecord(path.read_text(encoding="utf-8")[:budget])]
        stream = text_stream(tokenizer, records)
        exhausted = sum(len(getattr(r, "text", "")) for r in records) < budget
        if len(stream) >= need + 1 or exhausted:
            return records, stream
        budget *= 2


def perplexities(model: torch.nn.Module, sets: dict[str, list], pad_id: int = 0) -> dict[str, float]:
    from gisp.eval.perplexity import sequence_perplexity

    with torch.no_grad():
        return {name: sequence_perplexity(model, windows, pad_id=pad_id).perplexity for name, windows in sets.items()}


# ---------------------------------------------------------------- observers


@dataclass
class Measured:
    """What one pruning run gave: per-target metrics and per-step timings."""

    metrics: dict[float, dict[str, float]] = field(default_factory=dict)
    sparsity: dict[float, float] = field(default_factory=dict)
    params: dict[float, int] = field(default_factory=dict)
    step_seconds: list[float] = field(default_factory=list)
    checkpoint_seconds: float = 0.0  # spent measuring checkpoints, which the pruner times as part of a step

    @property
    def pruning_seconds(self) -> float:
        """Seconds of the steps themselves, the checkpoint measurements taken out."""
        return sum(self.step_seconds) - self.checkpoint_seconds


def timed_measure(measure, measured: Measured):
    """`measure` as the pruner calls it for each checkpoint, timed so that step times can leave the
    measurement out."""

    def _measure(model):
        started = time.perf_counter()
        metrics = measure(model)
        measured.checkpoint_seconds += time.perf_counter() - started
        return metrics

    return _measure


def eval_observer(measured: Measured):
    """An observer that records each checkpoint's metrics and sizes, and the step times."""
    from gisp import PruneObserver

    class _Observer(PruneObserver):
        def on_checkpoint(self, record):
            measured.metrics[record.target] = record.metrics
            measured.sparsity[record.target] = record.sparsity
            measured.params[record.target] = record.parameter_count

        def on_step(self, report, trajectory):
            measured.step_seconds.append(report.seconds)

    return _Observer()


# ---------------------------------------------------------------- code-built models


def random_llama(
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    intermediate: int,
    vocab: int,
    seed: int = 0,
    tie: bool = True,
    dtype: torch.dtype = torch.float32,
):
    """A random-weight Llama built in code, wrapped as the engine's `LoadedModel`. The tokenizer
    is a stand-in with the ids the pruner reads (pad/eos/bos); examples are synthetic token ids."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from gisp import LoadedModel
    from gisp.adapters import adapter_for

    config = LlamaConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        vocab_size=vocab,
        max_position_embeddings=2048,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(dtype).eval()
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=2, bos_token_id=1)
    name = f"random-llama-h{hidden}-l{layers}"
    return LoadedModel(model, tokenizer, adapter_for(config), name, None)  # type: ignore[arg-type]


def synthetic_examples(vocab: int, samples: int, seq_len: int, seed: int = 0) -> list:
    from gisp.data import SequenceExample

    rng = random.Random(seed)
    out = []
    for _ in range(samples):
        ids = [1] + [rng.randrange(3, vocab) for _ in range(seq_len - 1)]
        out.append(SequenceExample(ids, list(ids)))
    return out


def weight_bytes(model: torch.nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            total += param.numel() * param.element_size()
    return total


def param_count(model: torch.nn.Module) -> int:
    from gisp.eval.size import parameter_count

    return parameter_count(model)


# ---------------------------------------------------------------- formatting


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def run_header(title: str, args: argparse.Namespace) -> str:
    """Title, the exact command, machine, date and commit: what a reader needs to rerun a table."""
    command = "python3 " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{cpu_model()}, {os.cpu_count()} cores (shared), torch {torch.__version__}, {args.threads} thread(s)"
    return f"### {title}\n\n`{command}`  \n{machine}; {now}; commit {git_commit()}\n"


def emit(text: str, args: argparse.Namespace) -> None:
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a", encoding="utf-8") as handle:
            handle.write(text.rstrip() + "\n\n")


def write_json(data: object, args: argparse.Namespace) -> None:
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, default=str))
        print(f"raw results: {args.json}")
