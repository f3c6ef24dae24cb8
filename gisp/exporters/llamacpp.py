"""The `gguf` exporter: a GGUF file that llama.cpp runs (the writing is in `gguf_model`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gisp.exporters.base import Exporter, register_exporter

DTYPES = ("f32", "f16", "bf16", "q8_0")


@register_exporter
class GgufExporter(Exporter):
    name = "gguf"
    suffix = ".gguf"
    extra = "gguf"
    requires = ("gguf",)
    help = "a GGUF file for llama.cpp (deci architecture: per-layer head counts and MLP widths)"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dtype", choices=DTYPES, default="f16", help="tensor type of the matrices (default: f16)")
        parser.add_argument(
            "--tokenizer-pre",
            default=None,
            help="llama.cpp pre-tokenizer name for a BPE tokenizer whose splitting is not recognised",
        )

        parser.add_argument(
            "--align",
            type=int,
            default=32,
            help="round every MLP width up to a multiple of this with zero channels, for llama.cpp's fast "
            "matrix kernels and whole Q8_0 blocks (1: as pruned; default: 32)",
        )

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        return {"dtype": args.dtype, "tokenizer_pre": args.tokenizer_pre, "align": args.align}

    def write(self, folder: Path, out: Path, **options: Any) -> dict[str, Any]:
        from gisp.exporters.gguf_model import write_gguf

        return write_gguf(folder, out, **options).summary()
