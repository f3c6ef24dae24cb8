"""llama.cpp speed of pruned checkpoints exported to GGUF: prefill and decode tokens/s (llama.cpp's
own timers, llama-cpp-python) of the dense model and of every checkpoint of one `gisp` trajectory,
with and without flash attention, beside the parameter ratio; and the GGUF file size per dtype.

Models: stories260K (real weights, pruned on TinyStories, exported with `gisp.export_all`) and a
~113M random-weight Llama (hidden 768, 12 layers, 12 query / 4 KV heads, MLP 2048, SmolLM2's
49,152-token BPE vocabulary, tied head), pruned with gisp on synthetic windows and written as
checkpoint folders. Every folder becomes a GGUF with `gisp.exporters.export(..., "gguf")`.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGETS = [0.2, 0.3, 0.4, 0.5]
DTYPES = ["f32", "f16", "bf16", "q8_0"]
SMOLLM = common.SHARED / "models" / "smollm2-135m-instruct-q4_1"


def stories_folders(args, tmp: Path):
    """(label, HF folder, parameters) for dense stories260K and its exported checkpoints."""
    import gisp

    split = common.split_tinystories(tmp)
    settings = gisp.PruneSettings(
        targets=TARGETS, steps=args.steps, samples=args.samples, seq_len=128, heldout=0, reconstruct="none"
    )
    trajectory, prepared = gisp.run(str(common.STORIES), split.calibration, settings)
    spec = prepared.loaded.adapter.spec
    yield "dense", common.STORIES, gisp.Structure.full(spec).total_params(spec)
    records = sorted(trajectory.checkpoints, key=lambda r: r.target)
    for path, record in zip(gisp.export_all(trajectory, tmp / "stories"), records, strict=True):
        yield f"{record.target:g}", path, record.parameter_count


def random_folders(args, tmp: Path):
    """The same for the code-built ~113M Llama over SmolLM2's tokenizer."""
    from transformers import AutoTokenizer

    import gisp
    from gisp.adapters import adapter_for
    from gisp.export import save_checkpoint
    from gisp.gguf_input import converted_folder, gguf_file_of

    tokenizer = AutoTokenizer.from_pretrained(converted_folder(gguf_file_of(SMOLLM)))
    loaded = common.random_llama(768, 12, 12, 4, 2048, len(tokenizer))
    loaded.tokenizer = tokenizer
    dense = copy.deepcopy(loaded.model)
    spec = loaded.adapter.spec
    settings = gisp.PruneSettings(
        targets=TARGETS, steps=2 if args.quick else 4, samples=4, seq_len=64, heldout=0, reconstruct="none"
    )
    examples = common.synthetic_examples(spec.vocab_size, settings.samples, settings.seq_len)
    trajectory = gisp.prune(loaded, examples, settings, gisp.new_trajectory(loaded, settings, "synthetic"))
    del loaded
    full = gisp.Structure.full(spec)
    dense.save_pretrained(tmp / "random-dense")
    tokenizer.save_pretrained(tmp / "random-dense")
    yield "dense", tmp / "random-dense", full.total_params(spec)
    for record in sorted(trajectory.checkpoints, key=lambda r: r.target):
        model = copy.deepcopy(dense)
        adapter_for(model.config).slice_model(model, full, record.structure)
        names = adapter_for(model.config).export_names()
        path = save_checkpoint(model, tokenizer, trajectory, record, names, tmp / f"random-{record.target:.2f}")
        del model
        yield f"{record.target:g}", path, record.parameter_count


def _best(runs: list[dict]) -> tuple[float, float]:
    """The fastest round's prefill and decode tokens/s: on a shared box a round only loses time to
    the neighbours, never gains it, so the best of the interleaved rounds is the least disturbed."""
    return max(r["prefill_tokens_per_s"] for r in runs), max(r["decode_tokens_per_s"] for r in runs)


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--models", default="stories260K,random-113M")
    parser.add_argument("--dtype", default="f16", choices=DTYPES, help="GGUF type of the timed files")
    parser.add_argument("--llama-threads", default="2", help="llama.cpp thread counts to measure, e.g. 1,2")
    parser.add_argument("--aligns", default="32", help="GGUF MLP-width alignments to compare, e.g. 1,32")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens (prefill, one batch)")
    parser.add_argument("--decode", type=int, default=None, help="tokens decoded one at a time")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (best); models interleaved per round")
    parser.add_argument("--steps", type=int, default=None, help="schedule steps of the stories260K trajectory")
    parser.add_argument("--samples", type=int, default=None)
    args = parser.parse_args()
    args.decode = args.decode or (32 if args.quick else 128)
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.steps = args.steps or (4 if args.quick else 8)
    args.samples = args.samples or (8 if args.quick else 32)
    common.setup(args)
    common.require_assets(common.STORIES, common.TINYSTORIES, SMOLLM)

    from gisp.eval.llamacpp import LlamaCpp, available
    from gisp.exporters import export

    if not available():
        sys.exit("llama-cpp-python is not installed: pip install 'gisp-service[llamacpp]' (or .ci/llamacpp_wheel.sh)")
    tmp = Path(tempfile.mkdtemp(prefix="gisp-bench-llamacpp-"))
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    speed_rows, size_rows, results = [], [], []
    aligns = [int(a) for a in args.aligns.split(",")]
    for name in args.models.split(","):
        folders = list(stories_folders(args, tmp) if name == "stories260K" else random_folders(args, tmp))
        files, timed = {}, []  # (label, align) -> GGUF file; the rows to time, dense first
        for label, folder, params in folders:
            for align in aligns if label != "dense" else aligns[:1]:  # dense widths are whole blocks
                sizes = {}
                for dtype in DTYPES:
                    out = tmp / f"{name}-{label}-a{align}-{dtype}.gguf"
                    sizes[dtype] = export(folder, out, "gguf", dtype=dtype, align=align)["bytes"]
                    if dtype != args.dtype:
                        out.unlink()
                files[(label, align)] = tmp / f"{name}-{label}-a{align}-{args.dtype}.gguf"
                timed.append((label, align, params))
                row = [name, label, align, f"{params:,}", *(f"{sizes[d] / 1e6:,.2f}" for d in DTYPES)]
                size_rows.append(row)
        for threads, flash in [(int(t), f) for t in args.llama_threads.split(",") for f in (False, True)]:
            runners = {
                key: LlamaCpp(
                    path, n_ctx=args.prompt + args.decode + 8, threads=threads, flash_attn=flash, logits=False
                )
                for key, path in files.items()
            }
            rounds: dict[tuple[str, int], list] = {key: [] for key in runners}
            for runner in runners.values():  # warm-up
                runner.speed(16, 4)
            for _ in range(args.repeats):
                for key, runner in runners.items():
                    rounds[key].append(runner.speed(args.prompt, args.decode))
            for runner in runners.values():
                runner.close()
            best = {key: _best(runs) for key, runs in rounds.items()}
            dense_params, dense = folders[0][2], best[("dense", aligns[0])]
            for label, align, params in timed:
                prefill, decode = best[(label, align)]
                ratio = dense_params / params
                p, d = prefill / dense[0], decode / dense[1]
                results.append({"model": name, "checkpoint": label, "align": align, "threads": threads,
                                "flash_attn": flash, "parameters": params, "prefill_tokens_per_s": prefill,
                                "decode_tokens_per_s": decode, "rounds": rounds[(label, align)]})  # fmt: skip
                speed_rows.append([name, label, align, threads, "on" if flash else "off", f"{params:,}",
                                   f"{ratio:.2f}", f"{prefill:,.0f}", f"{p:.2f}", f"{p / ratio:.2f}",
                                   f"{decode:,.1f}", f"{d:.2f}", f"{d / ratio:.2f}"])  # fmt: skip
                print(
                    f"{name} {label} t={threads} fa={flash}: prefill {prefill:,.0f}, decode {decode:,.1f}", flush=True
                )

    mode = "quick" if args.quick else "full"
    text = "\n".join(
        [
            common.run_header(f"llama.cpp speed of pruned GGUF checkpoints ({mode} mode)", args),
            f"Load average at the start / end: {load_start} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
            "",
            f"llama-cpp-python (llama.cpp built from source, CPU), {args.dtype} GGUF, f16 KV cache; prompt "
            f"{args.prompt} tokens in one batch (prefill), then {args.decode} tokens one at a time (decode); tokens/s "
            f"from llama.cpp's perf counters; best of {args.repeats} rounds, models interleaved per round after one "
            f"warm-up each (raw rounds in the JSON). stories260K: gisp, {args.samples} calibration windows, "
            f"{args.steps} steps; random-113M: gisp on 4 synthetic windows × 64 tokens. `× dense` is the speed "
            "ratio, `/ params` that ratio divided by the parameter ratio (1.00 = speed follows parameters); "
            "`align`: the export's MLP-width rounding (1 = widths as pruned).",
            "",
            common.markdown_table(
                [
                    "model",
                    "checkpoint",
                    "align",
                    "threads",
                    "flash attn",
                    "params",
                    "param ratio",
                    "prefill tok/s",
                    "× dense",
                    "/ params",
                    "decode tok/s",
                    "× dense",
                    "/ params",
                ],
                speed_rows,
            ),  # fmt: skip
            "",
            "GGUF file size (MB) per dtype (q8_0 writes F16 where a row does not split into 32-value blocks):",
            "",
            common.markdown_table(["model", "checkpoint", "align", "params", *DTYPES], size_rows),
            "",
        ]
    )
    common.emit(text, args)
    common.write_json({"speed": results, "sizes": size_rows}, args)


if __name__ == "__main__":
    main()
