"""Measured generation speed: prefill tokens/s (one forward over a prompt) and decode tokens/s
(one token at a time with the KV cache), greedy, on whatever device the model is on.

Timings are the median of `repeats` runs after one warm-up; prompt ids are seeded random tokens so
that runs compare across checkpoints of the same base model.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class ThroughputResult:
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    prompt_tokens: int
    decode_tokens: int
    batch_size: int
    threads: int
    device: str

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _one_run(model: nn.Module, ids: torch.Tensor, decode_tokens: int) -> tuple[float, float]:
    device = ids.device
    _sync(device)
    started = time.perf_counter()
    out = model(input_ids=ids, use_cache=True)
    _sync(device)
    prefill = time.perf_counter() - started
    past = out.past_key_values
    token = out.logits[:, -1:].argmax(-1)
    started = time.perf_counter()
    for _ in range(decode_tokens):
        out = model(input_ids=token, past_key_values=past, use_cache=True)
        past = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
    _sync(device)
    return prefill, time.perf_counter() - started


def measure_throughput(
    model: nn.Module,
    prompt_tokens: int = 128,
    decode_tokens: int = 64,
    batch_size: int = 1,
    repeats: int = 3,
    seed: int = 0,
) -> ThroughputResult:
    """Prefill and decode speed of `model` (tokens per second, all batch rows counted)."""
    config = model.config
    limit = int(getattr(config, "max_position_embeddings", 0) or prompt_tokens + decode_tokens)
    prompt_tokens = max(1, min(prompt_tokens, limit - decode_tokens - 1))
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, config.vocab_size, (batch_size, prompt_tokens), generator=generator).to(device)
    was_training = model.training
    model.eval()
    try:
        _one_run(model, ids, min(decode_tokens, 4))  # warm-up
        runs = [_one_run(model, ids, decode_tokens) for _ in range(max(1, repeats))]
    finally:
        model.train(was_training)
    prefill = statistics.median(r[0] for r in runs)
    decode = statistics.median(r[1] for r in runs)
    return ThroughputResult(
        prefill_tokens_per_s=batch_size * prompt_tokens / prefill,
        decode_tokens_per_s=batch_size * decode_tokens / decode if decode_tokens else float("nan"),
        prompt_tokens=prompt_tokens,
        decode_tokens=decode_tokens,
        batch_size=batch_size,
        threads=torch.get_num_threads(),
        device=str(device),
    )
