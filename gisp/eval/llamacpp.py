"""Running an exported GGUF file in real llama.cpp (through llama-cpp-python, the `llamacpp`
extra): logits for comparison with transformers, token ids, greedy text, and prefill/decode
speed from llama.cpp's own timers."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gisp.errors import GispError

GGML_TYPE_F32 = 0  # ggml_type of an f32 KV cache (llama.cpp's default is f16)
GGML_LOG_LEVEL_ERROR = 4  # ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5


_log = logging.getLogger("gisp.llamacpp")
_callback: Any = None


def _route_logs() -> None:
    """Send llama.cpp's log lines to the `gisp.llamacpp` logger: errors as errors, the rest (e.g.
    the V-cache padding note) at debug level. llama-cpp-python 0.3.36's own callback maps ggml's
    current levels one step too high and prints its warnings as errors on stderr."""
    global _callback
    if _callback is not None:
        return
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        _log.log(
            logging.ERROR if level == GGML_LOG_LEVEL_ERROR else logging.DEBUG, text.decode(errors="replace").rstrip()
        )

    _callback = forward  # kept alive: llama.cpp holds a raw pointer to it
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCpp:
    """One llama.cpp context on a GGUF file. `exact` keeps the KV cache in f32 (llama.cpp's default
    f16 cache rounds keys and values); `flash_attn` selects llama.cpp's flash-attention path."""

    def __init__(
        self,
        path: str | Path,
        n_ctx: int = 512,
        threads: int = 2,
        flash_attn: bool = False,
        exact: bool = False,
        logits: bool = True,
        n_batch: int = 512,
    ) -> None:
        if not available():
            raise GispError("running GGUF files needs llama-cpp-python: pip install 'gisp-service[llamacpp]'")
        from llama_cpp import Llama

        _route_logs()
        cache = {"type_k": GGML_TYPE_F32, "type_v": GGML_TYPE_F32} if exact else {}
        self.llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=logits,
            flash_attn=flash_attn,
            verbose=False,
            **cache,
        )

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False))

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """[len(ids), vocab] logits of one sequence evaluated from an empty cache."""
        self.llm.reset()
        self.llm.eval(list(ids))
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def greedy(self, prompt: str, max_tokens: int = 40) -> str:
        out = self.llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, top_k=1)
        return str(out["choices"][0]["text"])

    def speed(self, prompt_tokens: int, decode_tokens: int, token: int = 100) -> dict[str, Any]:
        """Prefill `prompt_tokens` in one batch, then decode `decode_tokens` one at a time (the
        token value does not change the cost); tokens/s from llama.cpp's perf counters."""
        import llama_cpp

        self.llm.reset()
        llama_cpp.llama_perf_context_reset(self.llm.ctx)
        self.llm.eval([token] * prompt_tokens)
        llama_cpp.llama_synchronize(self.llm.ctx)  # llama.cpp books a batch's time when it synchronizes
        for _ in range(decode_tokens):
            self.llm.eval([token])
            llama_cpp.llama_synchronize(self.llm.ctx)
        perf = llama_cpp.llama_perf_context(self.llm.ctx)
        return {
            "prefill_tokens_per_s": perf.n_p_eval / (perf.t_p_eval_ms / 1e3) if perf.t_p_eval_ms else float("nan"),
            "decode_tokens_per_s": perf.n_eval / (perf.t_eval_ms / 1e3) if perf.t_eval_ms else float("nan"),
            "prefill_tokens": int(perf.n_p_eval),
            "decode_tokens": int(perf.n_eval),
        }

    def close(self) -> None:
        self.llm.close()

    def __enter__(self) -> LlamaCpp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Agreement:
    """llama.cpp against transformers over some prompts: the largest |logit difference|, the share
    of positions whose top-1 token agrees, and the prompts llama.cpp tokenized differently."""

    max_abs_diff: float
    top1: float
    tokens: int
    tokenized_differently: list[str]


def agreement(gguf_file: str | Path, folder: str | Path, prompts: Sequence[str], **llama: Any) -> Agreement:
    """Run `gguf_file` in llama.cpp and checkpoint `folder` in transformers on each prompt (tokenized
    by the folder's tokenizer) and compare every position's logits."""
    import torch

    from gisp.eval.harness import load_for_eval

    model, tokenizer = load_for_eval(str(folder))
    worst, agree, total, different = 0.0, 0, 0, []
    with LlamaCpp(gguf_file, **{"n_ctx": 256, **llama}) as llm:
        for prompt in prompts:
            ids = tokenizer(prompt).input_ids
            if llm.tokenize(prompt, add_bos=ids[0] == tokenizer.bos_token_id) != ids:
                different.append(prompt)
            ours = llm.logits(ids)
            with torch.no_grad():
                theirs = model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
            worst = max(worst, float(np.abs(ours - theirs).max()))
            agree += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
            total += len(ids)
    return Agreement(worst, agree / total, total, different)
