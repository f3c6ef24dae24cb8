"""What the vLLM plugin builds for a compact gisp checkpoint, from its config alone: per layer the
query heads (kept KV groups x the base model's query heads per group), KV heads and MLP width;
which projections have biases; which checkpoint tensors have a place in the model (a layer that
keeps no KV group has no attention module or input norm in vLLM, one that keeps no channel no MLP
or post-attention norm, while the checkpoint still holds those norms and zero-size tensors)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

LAYER_TENSOR = re.compile(r"^model\.layers\.(\d+)\.(self_attn|mlp|input_layernorm|post_attention_layernorm)\.")


@dataclass(frozen=True)
class LayerSpec:
    index: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int

    @property
    def has_attention(self) -> bool:
        return self.num_kv_heads > 0

    @property
    def has_mlp(self) -> bool:
        return self.intermediate_size > 0


@dataclass(frozen=True)
class Biases:
    qkv: bool
    o: bool
    mlp: bool


def _get(config: Any, key: str, default: Any = None) -> Any:
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


def layer_specs(config: Any) -> list[LayerSpec]:
    """Per-layer sizes of a gisp checkpoint config (a transformers config or its dict)."""
    layers = int(_get(config, "num_hidden_layers"))
    heads = int(_get(config, "num_attention_heads"))
    kv_heads = int(_get(config, "num_key_value_heads") or heads)
    groups = _get(config, "layer_num_key_value_heads") or [kv_heads] * layers
    widths = _get(config, "layer_intermediate_sizes") or [int(_get(config, "intermediate_size"))] * layers
    per_group = heads // kv_heads
    return [
        LayerSpec(i, int(g) * per_group, int(g), int(w)) for i, (g, w) in enumerate(zip(groups, widths, strict=True))
    ]


def projection_biases(config: Any) -> Biases:
    """Biases as the base architecture has them (Qwen2: q/k/v only; Llama: attention_bias for
    q/k/v/o, mlp_bias for gate/up/down). A reconstruction's output-only biases (o_proj/down_proj on
    a model without them) have no vLLM Llama layer to go into: refused with the reason."""
    family = str(_get(config, "model_type", "")).removeprefix("gisp_")
    attention_bias = bool(_get(config, "attention_bias", False))
    biases = Biases(
        qkv=family == "qwen2" or attention_bias,
        o=attention_bias and family != "qwen2",
        mlp=bool(_get(config, "mlp_bias", False)),
    )
    if _get(config, "output_proj_bias", False) and not (biases.o and biases.mlp):
        raise ValueError(
            "gisp vLLM plugin: this checkpoint adds o_proj/down_proj biases (a bias reconstruction), which vLLM's "
            "Llama attention/MLP layers only take together with q/k/v and gate/up biases; "
            "serve it through `gisp export-vllm` (padded DeciLM layout) instead"
        )
    return biases


def weight_is_used(name: str, specs: list[LayerSpec], numel: int) -> bool:
    """Whether checkpoint tensor `name` (with `numel` values) has a place in the plugin's model."""
    if numel == 0:
        return False
    match = LAYER_TENSOR.match(name)
    if match is None:
        return True
    spec, part = specs[int(match.group(1))], match.group(2)
    if part in ("self_attn", "input_layernorm"):
        return spec.has_attention
    return spec.has_mlp
