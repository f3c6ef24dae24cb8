"""A transformers implementation of the DeciLM layout in `configuration_decilm`, written to check
that a padded export computes what the compact checkpoint computes (and to load the folder without
vLLM). Each layer's attention has the global query-head count and `num_attention_heads //
n_heads_in_group` KV heads; a no-op attention or FFN adds nothing and has no norm or weights."""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaForCausalLM

try:  # relative import when loaded as remote code from a checkpoint folder
    from .configuration_decilm import DeciLMConfig
except ImportError:  # pragma: no cover - loaded as a top-level module
    from configuration_decilm import DeciLMConfig


class NoOpAttention(nn.Module):
    """Adds nothing; writes empty keys/values so that the cache's per-layer lengths stay right."""

    def __init__(self, layer_idx: int, head_dim: int) -> None:
        super().__init__()
        self.layer_idx, self.head_dim = layer_idx, head_dim

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, past_key_values=None, **kwargs):
        batch, seq = hidden_states.shape[:2]
        if past_key_values is not None:
            empty = hidden_states.new_zeros((batch, 0, seq, self.head_dim))
            past_key_values.update(empty, empty.clone(), self.layer_idx)
        return hidden_states.new_zeros(hidden_states.shape), None


class NoOpMLP(nn.Module):
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states.new_zeros(hidden_states.shape)


def _linear(inputs: int, outputs: int, bias: bool) -> nn.Linear:
    return nn.Linear(inputs, outputs, bias=bias)


class DeciLMForCausalLM(LlamaForCausalLM):
    config_class = DeciLMConfig

    def __init__(self, config: DeciLMConfig) -> None:
        super().__init__(config)
        heads, hidden = config.num_attention_heads, config.hidden_size
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        for index, (layer, block) in enumerate(zip(self.model.layers, config.block_configs, strict=True)):
            if block.attention.no_op:
                layer.self_attn = NoOpAttention(index, head_dim)
                layer.input_layernorm = nn.Identity()
            else:
                attn = layer.self_attn
                kv_heads = heads // block.attention.n_heads_in_group
                attn.num_key_value_groups = block.attention.n_heads_in_group
                attn.q_proj = _linear(hidden, heads * head_dim, config.qkv_bias)
                attn.k_proj = _linear(hidden, kv_heads * head_dim, config.qkv_bias)
                attn.v_proj = _linear(hidden, kv_heads * head_dim, config.qkv_bias)
                attn.o_proj = _linear(heads * head_dim, hidden, config.attention_bias)
            if block.ffn.no_op:
                layer.mlp = NoOpMLP()
                layer.post_attention_layernorm = nn.Identity()
            else:
                mlp, width = layer.mlp, block.ffn.intermediate_size
                mlp.gate_proj = _linear(hidden, width, config.mlp_bias)
                mlp.up_proj = _linear(hidden, width, config.mlp_bias)
                mlp.down_proj = _linear(width, hidden, config.mlp_bias)
                mlp.intermediate_size = width
