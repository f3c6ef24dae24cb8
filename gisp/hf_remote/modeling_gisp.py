"""Llama-family causal LMs whose layers have their own attention and MLP widths.

Each class builds the base architecture, then gives every decoder layer the widths that
`config.layer_num_key_value_heads` and `config.layer_intermediate_sizes` name. A layer that keeps no
KV group gets `EmptyAttention`: it adds nothing to the residual stream (but the o_proj bias, if the
model has one) and still writes empty keys/values to the KV cache so that cache lengths stay right.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM

try:  # relative import when loaded as remote code from a checkpoint folder
    from .configuration_gisp import GispLlamaConfig, GispMistralConfig, GispQwen2Config
except ImportError:  # pragma: no cover - loaded as a top-level module
    from configuration_gisp import GispLlamaConfig, GispMistralConfig, GispQwen2Config


class EmptyAttention(nn.Module):
    """Stand-in for an attention block with every KV group removed."""

    def __init__(self, layer_idx: int, head_dim: int, o_bias: torch.Tensor | None) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = head_dim
        if o_bias is not None:
            self.o_bias = nn.Parameter(o_bias.detach().clone())
        else:
            self.o_bias = None

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, past_key_values=None, **kwargs):
        batch, seq = hidden_states.shape[:2]
        if past_key_values is not None:
            empty = hidden_states.new_zeros((batch, 0, seq, self.head_dim))
            past_key_values.update(empty, empty.clone(), self.layer_idx)
        out = hidden_states.new_zeros(hidden_states.shape)
        if self.o_bias is not None:
            out = out + self.o_bias
        return out, None


def _resized_linear(old: nn.Linear, out_features: int, in_features: int) -> nn.Linear:
    new = nn.Linear(
        in_features, out_features, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype
    )
    return new


def resize_attention(layer: nn.Module, num_kv_heads: int, heads_per_group: int, head_dim: int) -> None:
    """Give `layer.self_attn` room for `num_kv_heads` KV groups (weights uninitialised)."""
    attn = layer.self_attn
    if num_kv_heads == 0:
        o_bias = attn.o_proj.bias
        layer.self_attn = EmptyAttention(attn.layer_idx, head_dim, o_bias)
        return
    q_out = num_kv_heads * heads_per_group * head_dim
    kv_out = num_kv_heads * head_dim
    hidden = attn.q_proj.in_features
    attn.q_proj = _resized_linear(attn.q_proj, q_out, hidden)
    attn.k_proj = _resized_linear(attn.k_proj, kv_out, hidden)
    attn.v_proj = _resized_linear(attn.v_proj, kv_out, hidden)
    attn.o_proj = _resized_linear(attn.o_proj, attn.o_proj.out_features, q_out)


def resize_mlp(layer: nn.Module, width: int) -> None:
    """Give `layer.mlp` an intermediate width of `width` channels (weights uninitialised)."""
    mlp = layer.mlp
    hidden = mlp.gate_proj.in_features
    mlp.gate_proj = _resized_linear(mlp.gate_proj, width, hidden)
    mlp.up_proj = _resized_linear(mlp.up_proj, width, hidden)
    mlp.down_proj = _resized_linear(mlp.down_proj, mlp.down_proj.out_features, width)
    mlp.intermediate_size = width


def add_output_biases(model: nn.Module) -> None:
    """Give every o_proj and down_proj a bias: a reconstructed checkpoint (`output_bias` in its
    config) carries one there that the base architecture does not have."""
    for layer in model.model.layers:
        for parent, name in ((layer.self_attn, "o_proj"), (layer.mlp, "down_proj")):
            old = getattr(parent, name)
            if old.bias is None:
                new = nn.Linear(
                    old.in_features, old.out_features, bias=True, device=old.weight.device, dtype=old.weight.dtype
                )
                setattr(parent, name, new)


def apply_layer_widths(model: nn.Module, config) -> None:
    """Resize every decoder layer of `model` to the widths its config names."""
    if getattr(config, "output_bias", False):
        add_output_biases(model)
    kv_heads = getattr(config, "layer_num_key_value_heads", None)
    widths = getattr(config, "layer_intermediate_sizes", None)
    heads_per_group = config.num_attention_heads // config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    for index, layer in enumerate(model.model.layers):
        if kv_heads is not None and kv_heads[index] != config.num_key_value_heads:
            resize_attention(layer, kv_heads[index], heads_per_group, head_dim)
        if widths is not None and widths[index] != config.intermediate_size:
            resize_mlp(layer, widths[index])


class GispLlamaForCausalLM(LlamaForCausalLM):
    config_class = GispLlamaConfig

    def __init__(self, config):
        super().__init__(config)
        apply_layer_widths(self, config)


class GispMistralForCausalLM(MistralForCausalLM):
    config_class = GispMistralConfig

    def __init__(self, config):
        super().__init__(config)
        apply_layer_widths(self, config)


class GispQwen2ForCausalLM(Qwen2ForCausalLM):
    config_class = GispQwen2Config

    def __init__(self, config):
        super().__init__(config)
        apply_layer_widths(self, config)
