"""Configs of structurally pruned Llama-family models: per-layer KV-head and MLP widths.

`layer_num_key_value_heads[i]` is the number of key/value heads (KV groups) layer i keeps; each
keeps `num_attention_heads // num_key_value_heads` query heads, the base model's ratio.
`layer_intermediate_sizes[i]` is layer i's MLP width. Either may be 0.
"""

from transformers import LlamaConfig, MistralConfig, Qwen2Config


class GispLlamaConfig(LlamaConfig):
    model_type = "gisp_llama"


class GispMistralConfig(MistralConfig):
    model_type = "gisp_mistral"


class GispQwen2Config(Qwen2Config):
    model_type = "gisp_qwen2"
