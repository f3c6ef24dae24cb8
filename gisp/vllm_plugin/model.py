"""The vLLM model behind the plugin (imported by vLLM, needs vllm). It reuses vLLM's DeciLM
model, whose decoder-layer type is a parameter, with a layer whose attention has that layer's own
query- and KV-head counts (vLLM's Llama attention takes both as constructor arguments) and whose
MLP has that layer's width; a layer without heads or channels has no module there at all.

Unlike vLLM's DeciLM layer, this one also accepts a first layer without attention (the residual
stream starts at its FFN)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.models.llama import LlamaMLP
from vllm.model_executor.models.nemotron_nas import DeciLMAttention, DeciLMForCausalLM, DeciModel

from gisp.vllm_plugin.layout import layer_specs, projection_biases, weight_is_used


def _norm(norm: nn.Module, hidden: torch.Tensor, residual: torch.Tensor | None):
    if residual is None:
        return norm(hidden), hidden
    return norm(hidden, residual)


class GispDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx: int, cache_config=None, quant_config=None, prefix: str = "") -> None:
        super().__init__()
        spec = layer_specs(config)[layer_idx]
        biases = projection_biases(config)
        self.hidden_size = config.hidden_size
        self._is_no_op_attention = not spec.has_attention
        self._is_no_op_ffn = not spec.has_mlp
        if spec.has_attention:
            self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.self_attn = DeciLMAttention(
                config=config,
                hidden_size=config.hidden_size,
                num_heads=spec.num_heads,
                num_kv_heads=spec.num_kv_heads,
                max_position_embeddings=getattr(config, "max_position_embeddings", 8192),
                quant_config=quant_config,
                bias=biases.qkv,
                bias_o_proj=biases.o,
                cache_config=cache_config,
                prefix=f"{prefix}.self_attn",
            )
        if spec.has_mlp:
            self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.mlp = LlamaMLP(
                hidden_size=config.hidden_size,
                intermediate_size=spec.intermediate_size,
                hidden_act=config.hidden_act,
                quant_config=quant_config,
                bias=biases.mlp,
                prefix=f"{prefix}.mlp",
            )

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, residual: torch.Tensor | None):
        if not self._is_no_op_attention:
            hidden_states, residual = _norm(self.input_layernorm, hidden_states, residual)
            hidden_states = self.self_attn(positions=positions, hidden_states=hidden_states)
        if not self._is_no_op_ffn:
            hidden_states, residual = _norm(self.post_attention_layernorm, hidden_states, residual)
            hidden_states = self.mlp(hidden_states)
        return hidden_states, residual


class GispForCausalLM(DeciLMForCausalLM):
    """vLLM's DeciLM causal LM with gisp's per-layer decoder layers."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        config = vllm_config.model_config.hf_config
        if getattr(config, "head_dim", None) is None:  # the layers' head counts differ from the global one
            config.head_dim = config.hidden_size // config.num_attention_heads
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._specs = layer_specs(config)

    def _init_model(self, vllm_config, prefix: str = ""):
        return DeciModel(vllm_config=vllm_config, prefix=prefix, layer_type=GispDecoderLayer)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        used = ((name, t) for name, t in weights if weight_is_used(name, self._specs, t.numel()))
        return super().load_weights(used)
