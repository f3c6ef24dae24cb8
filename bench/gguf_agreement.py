"""Logit agreement of GGUF exports run in llama.cpp with the transformers checkpoint they come from:
max |logit difference| and top-1 agreement per dtype (f32 with an f32 KV cache, the rest with
llama.cpp's default f16 cache), with and without flash attention, for stories260K (dense and
pruned on TinyStories) and, with `--smollm`, a pruned SmolLM2-135M from its GGUF file.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

PROMPTS = [
    "Once upon a time, there was a little girl named Lily.",
    "The dog ran to the park and saw a big red ball. He was very happy.",
    'Tom said, "I want to play with you!" and they laughed.',
    "In 2024, 12345 apples cost $3.50.",
]
DTYPES = ["f32", "f16", "bf16", "q8_0"]


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--smollm", action="store_true", help="also prune and compare SmolLM2-135M (a few minutes)")
    args = parser.parse_args()
    common.setup(args)
    common.require_assets(common.STORIES, common.TINYSTORIES)

    import gisp
    from gisp.eval.llamacpp import agreement
    from gisp.exporters import export

    tmp = Path(tempfile.mkdtemp(prefix="gisp-bench-agreement-"))
    split = common.split_tinystories(tmp)
    settings = gisp.PruneSettings(targets=[0.3, 0.5], steps=8, samples=32, seq_len=128, heldout=0, reconstruct="none")
    trajectory, _ = gisp.run(str(common.STORIES), split.calibration, settings)
    folders = [("stories260K", "dense", common.STORIES)]
    folders += [("stories260K", p.name, p) for p in gisp.export_all(trajectory, tmp / "stories")]
    if args.smollm:
        smollm = common.SHARED / "models" / "smollm2-135m-instruct-q4_1"
        small = gisp.PruneSettings(targets=[0.3], steps=4, samples=8, seq_len=128, heldout=0, reconstruct="none")
        smol_trajectory, _ = gisp.run(str(smollm), split.calibration, small)
        folders += [("SmolLM2-135M", p.name, p) for p in gisp.export_all(smol_trajectory, tmp / "smollm")]
    rows = []
    for model, label, folder in folders:
        dtypes = DTYPES if model == "stories260K" else ["f32", "q8_0"]
        for dtype in dtypes:
            out = tmp / f"{model}-{label}-{dtype}.gguf"
            export(folder, out, "gguf", dtype=dtype)
            for flash in (False, True):
                result = agreement(out, folder, PROMPTS, exact=dtype == "f32" and not flash, flash_attn=flash)
                if result.tokenized_differently:
                    sys.exit(f"llama.cpp tokenized differently: {result.tokenized_differently}")
                worst, top1, tokens = result.max_abs_diff, result.top1, result.tokens
                cache = "f32" if dtype == "f32" and not flash else "f16"
                rows.append(
                    [model, label, dtype, cache, "on" if flash else "off", f"{worst:.2e}", f"{top1:.3f}", tokens]
                )
                print(rows[-1], flush=True)
            out.unlink()
    text = "\n".join(
        [
            common.run_header("llama.cpp vs transformers: logit agreement of GGUF exports", args),
            f"{len(PROMPTS)} prompts; each position's logits from llama.cpp (llama-cpp-python, CPU) against the "
            "float32 transformers checkpoint. stories260K pruned with gisp (32 windows × 128 tokens, 8 steps); "
            "SmolLM2-135M (from its Q4_1 GGUF, dequantized) with gisp, 8 windows, 4 steps.",
            "",
            common.markdown_table(
                [
                    "model",
                    "checkpoint",
                    "GGUF dtype",
                    "KV cache",
                    "flash attn",
                    "max abs diff",
                    "top-1 agree",
                    "tokens",
                ],
                rows,
            ),
            "",
        ]
    )
    common.emit(text, args)


if __name__ == "__main__":
    main()
