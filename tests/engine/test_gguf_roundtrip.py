"""GGUF in, GGUF out: the real SmolLM2-135M GGUF is pruned, its checkpoint exported back to GGUF and
run in llama.cpp; the BPE tokenizer round-trips (same vocabulary, types, merges and pre-tokenizer as
the original file, same token ids as transformers and as the original file in llama.cpp)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gisp.cli import main
from gisp.eval import llamacpp
from gisp.eval.harness import load_for_eval
from gisp.exporters import export
from tests.conftest import shared_path
from tests.engine.test_gguf_export import compare, needs_llamacpp, pruned_checkpoint, read

gguf = pytest.importorskip("gguf", reason="pip install 'gisp-service[gguf]'")
pytestmark = pytest.mark.integration

SAMPLES = [
    "Once upon a time, there was a little girl named Lily.",
    "In 2024, 12345 apples cost $3.50 (or 3,50 €).",
    "Hello  world\n\nnew   paragraph\twith a tab",
    "naïve café, Straße, 東京, emoji 🙂",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>",
]


@pytest.fixture(scope="module")
def smollm_file() -> Path:
    return next(shared_path("models", "smollm2-135m-instruct-q4_1").glob("*.gguf"))


def test_the_bpe_tokenizer_is_written_as_the_original_file_has_it(smollm_file: Path, tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "ckpt", case="no-mlp-channel", tokenizer="bpe")
    export(folder, tmp_path / "m.gguf", "gguf", dtype="f32")
    ours, _ = read(tmp_path / "m.gguf")
    original = {name: field.contents() for name, field in gguf.GGUFReader(smollm_file).fields.items()}
    for key in (
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.add_bos_token",
    ):
        assert ours[key] == original[key], key


@needs_llamacpp
def test_bpe_token_ids_and_logits_round_trip(smollm_file: Path, tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "ckpt", case="both-in-one-layer", tokenizer="bpe")
    export(folder, tmp_path / "m.gguf", "gguf", dtype="f32")
    _, tok = load_for_eval(str(folder))
    with llamacpp.LlamaCpp(tmp_path / "m.gguf", n_ctx=128) as exported, llamacpp.LlamaCpp(smollm_file) as source:
        for text in SAMPLES:
            ids = tok(text, add_special_tokens=False).input_ids
            assert exported.llm.tokenize(text.encode(), add_bos=False, special=True) == ids, text
            assert source.llm.tokenize(text.encode(), add_bos=False, special=True) == ids, text
            assert exported.llm.detokenize(ids, special=True).decode() == tok.decode(ids), text
    worst, top1 = compare(tmp_path / "m.gguf", folder, SAMPLES[:2], exact=True)
    assert top1 == 1.0 and worst < 1e-4, (worst, top1)


@needs_llamacpp
def test_prune_the_real_135m_gguf_and_run_the_checkpoint_in_llamacpp(smollm_file: Path, tmp_path: Path) -> None:
    """The whole round trip through the CLI: GGUF base -> prune -> checkpoint -> GGUF -> llama.cpp."""
    data = shared_path("data", "tinystories", "tinystories_val.txt")
    args = ["--method", "magnitude", "--targets", "0.3", "--steps", "1", "--samples", "4", "--seq-len", "64"]
    args += ["--reconstruct", "none"]  # the refit's GGUF path is tested on stories260K; 30 wide layers cost ~1.5 min
    assert main(["prune", str(smollm_file.parent), "--data", str(data), "--out", str(tmp_path), *args]) == 0
    folder = tmp_path / "sparsity-0.30"
    out = tmp_path / "s30.gguf"
    assert main(["export-gguf", str(folder), "--out", str(out), "--dtype", "f32"]) == 0
    fields, _ = read(out)
    assert len(set(fields["deci.attention.head_count_kv"])) > 1  # the pruned layers really differ
    prompts = ["Once upon a time, there was a little", "In 2024, 12345 apples cost $3.50."]
    worst, top1 = compare(out, folder, prompts, exact=True)  # 30 layers: float32 rounding adds up to ~1e-3
    assert top1 == 1.0 and worst < 5e-3, (worst, top1)
    model, tok = load_for_eval(str(folder))
    ids = tok(prompts[0]).input_ids
    with torch.no_grad():
        expected = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids) :].tolist()
    with llamacpp.LlamaCpp(out, n_ctx=128, exact=True) as llm:
        generated = []
        for _ in range(12):
            generated.append(int(np.argmax(llm.logits(ids + generated)[-1])))
    assert generated == expected
