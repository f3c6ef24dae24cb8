"""One entry point for benchmarking a model: perplexity at several window lengths, multiple-choice
accuracy on several sets, size and FLOPs, and optionally measured throughput, as one JSON-able dict.
`gisp eval` is a thin wrapper around it; bench scripts can call it in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from gisp.eval.choice import choice_scores
from gisp.eval.perplexity import file_perplexity
from gisp.eval.readers import detect_mc_format, read_mc
from gisp.eval.size import model_size
from gisp.eval.throughput import measure_throughput


def load_for_eval(source: str, device: str = "cpu") -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """A pruned checkpoint folder (model_type gisp_*) or a base model (folder or hub id), in eval mode."""
    from gisp.export import load_pruned
    from gisp.loading import load_model

    path = Path(source)
    config = path / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type", "").startswith("gisp_"):
        model = load_pruned(path).to(device).eval()
        return model, AutoTokenizer.from_pretrained(str(path), trust_remote_code=True)
    loaded = load_model(source, device=device)
    return loaded.model, loaded.tokenizer


def evaluate_model(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    data: str | Path | None = None,
    seq_lens: list[int] | tuple[int, ...] = (256,),
    max_windows: int | None = None,
    mc: list[tuple[str | Path, str]] | None = None,
    mc_limit: int | None = None,
    batch_size: int = 16,
    throughput: bool = False,
    prompt_tokens: int = 128,
    decode_tokens: int = 64,
) -> dict[str, Any]:
    """Everything asked for, keyed by what it is; perplexity keyed by window length."""
    summary: dict[str, Any] = model_size(model).to_dict()
    if data is not None:
        per_len = {}
        for seq_len in seq_lens:
            result = file_perplexity(model, tokenizer, data, seq_len, max_windows)
            per_len[str(seq_len)] = {"perplexity": result.perplexity, "nll": result.nll, "tokens": result.tokens}
        first = per_len[str(seq_lens[0])]
        summary.update(
            data=str(data),
            perplexity=first["perplexity"],
            tokens=first["tokens"],
            seq_len=seq_lens[0],
            perplexity_by_seq_len=per_len,
        )
    if mc:
        summary["mc"] = {}
        for path, fmt in mc:
            fmt = detect_mc_format(path) if fmt == "auto" else fmt
            result = choice_scores(model, tokenizer, read_mc(path, fmt, mc_limit), batch_size=batch_size)
            summary["mc"][str(path)] = {"format": fmt, **result.__dict__}
    if throughput:
        summary["throughput"] = measure_throughput(model, prompt_tokens, decode_tokens).to_dict()
    return summary
