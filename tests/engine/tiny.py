"""Tiny random Llama-family models and a word-level tokenizer, built in code for unit tests."""

from __future__ import annotations

import random

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from gisp.adapters import adapter_for
from gisp.data import SequenceExample
from gisp.loading import LoadedModel
from tests.conftest import shared_path

VOCAB = 64
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=24,
    num_hidden_layers=3,
    max_position_embeddings=128,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    tie_word_embeddings=False,
)

# name -> (config class, model class, extra config)
FAMILIES = {
    "llama-mha": (LlamaConfig, LlamaForCausalLM, dict(num_attention_heads=4, num_key_value_heads=4)),
    "llama-gqa": (LlamaConfig, LlamaForCausalLM, dict(num_attention_heads=4, num_key_value_heads=2)),
    "llama-bias": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(num_attention_heads=4, num_key_value_heads=2, attention_bias=True, mlp_bias=True),
    ),
    "mistral": (
        MistralConfig,
        MistralForCausalLM,
        dict(num_attention_heads=4, num_key_value_heads=2, sliding_window=64),
    ),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(num_attention_heads=4, num_key_value_heads=2)),
}


def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3} | {f"w{i}": i for i in range(4, VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_model(family: str, seed: int = 0) -> LoadedModel:
    config_cls, model_cls, extra = FAMILIES[family]
    torch.manual_seed(seed)
    config = config_cls(**COMMON, **extra)
    model = model_cls(config).eval()
    with torch.no_grad():  # biases start at zero; make them matter
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.1)
    return LoadedModel(model, tokenizer(), adapter_for(config), f"tiny-{family}", None)


def real_tokenizer(kind: str) -> PreTrainedTokenizerBase:
    """A real tokenizer for models that must run in llama.cpp: "spm" is stories260K's sentencepiece
    tokenizer (512 tokens, with its tokenizer.model), "bpe" SmolLM2's byte-level BPE (49,152 tokens,
    from the cached conversion of the 135M GGUF file)."""
    if kind == "spm":
        return AutoTokenizer.from_pretrained(shared_path("models", "stories260K"))
    from gisp.gguf_input import converted_folder, gguf_file_of

    gguf_file = gguf_file_of(shared_path("models", "smollm2-135m-instruct-q4_1"))
    assert gguf_file is not None
    return AutoTokenizer.from_pretrained(converted_folder(gguf_file))


def tiny_lm(family: str, tokenizer: PreTrainedTokenizerBase, seed: int = 0, **overrides) -> LoadedModel:
    """A tiny random model of `family` over a real tokenizer's vocabulary (4 layers unless overridden)."""
    config_cls, model_cls, extra = FAMILIES[family]
    torch.manual_seed(seed)
    settings = {**COMMON, "num_hidden_layers": 4, "intermediate_size": 48, **extra, **overrides}
    settings.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    settings["pad_token_id"] = tokenizer.pad_token_id
    config = config_cls(**settings)
    model = model_cls(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.1)
            elif name.endswith("norm.weight"):  # norms start at one; make them matter too
                param.uniform_(0.5, 1.5)
    return LoadedModel(model, tokenizer, adapter_for(config), f"tiny-{family}", None)


def random_examples(count: int, length: int, seed: int = 0) -> list[SequenceExample]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        ids = [1] + [rng.randrange(4, VOCAB) for _ in range(length - 1)]
        out.append(SequenceExample(ids, list(ids)))
    return out
