"""The Llama family as transformers implements it: Llama, Mistral, Qwen2.

Unit layouts (HF weight shapes are [out, in]):
- attention unit = KV group g: q_proj rows of its query heads (heads_per_group*head_dim rows),
  k_proj and v_proj rows of its KV head (head_dim rows each, with biases when present) and the
  matching o_proj columns;
- MLP unit = channel c: gate_proj and up_proj row c (with biases) and down_proj column c.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig

from gisp.adapters.base import ArchitectureAdapter, WeightGroup, register_adapter
from gisp.hf_remote.modeling_gisp import EmptyAttention
from gisp.slots import unit_slots
from gisp.structure import ArchSpec, Kind


def _index_select_param(module: nn.Module, name: str, axis: int, index: torch.Tensor) -> None:
    old = getattr(module, name)
    if old is None:
        return
    new = nn.Parameter(
        old.detach().index_select(axis, index.to(old.device)).contiguous(), requires_grad=old.requires_grad
    )
    setattr(module, name, new)


def _fix_linear_dims(linear: nn.Linear) -> None:
    linear.out_features, linear.in_features = linear.weight.shape


@register_adapter
class LlamaFamilyAdapter(ArchitectureAdapter):
    model_types = ("llama", "mistral", "qwen2")

    @staticmethod
    def read_spec(config: PretrainedConfig) -> ArchSpec:
        family = config.model_type.removeprefix("gisp_")
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        qkv_bias = True if family == "qwen2" else bool(getattr(config, "attention_bias", False))
        o_bias = False if family == "qwen2" else bool(getattr(config, "attention_bias", False))
        return ArchSpec(
            family=family,
            num_layers=config.num_hidden_layers,
            hidden_size=config.hidden_size,
            num_kv_heads=kv_heads,
            heads_per_group=heads // kv_heads,
            head_dim=head_dim,
            intermediate_size=config.intermediate_size,
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            mlp_bias=bool(getattr(config, "mlp_bias", False)),
            vocab_size=config.vocab_size,
            tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        )

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(model.model.layers)

    def weight_groups(self, layer: nn.Module, kind: Kind) -> list[WeightGroup]:
        spec = self.spec
        if kind == "attn":
            attn = layer.self_attn
            if isinstance(attn, EmptyAttention):
                return []
            q = spec.heads_per_group * spec.head_dim
            groups = [
                WeightGroup(attn.q_proj, "weight", 0, q),
                WeightGroup(attn.k_proj, "weight", 0, spec.head_dim),
                WeightGroup(attn.v_proj, "weight", 0, spec.head_dim),
                WeightGroup(attn.o_proj, "weight", 1, q),
            ]
            if spec.qkv_bias:
                groups += [
                    WeightGroup(attn.q_proj, "bias", 0, q),
                    WeightGroup(attn.k_proj, "bias", 0, spec.head_dim),
                    WeightGroup(attn.v_proj, "bias", 0, spec.head_dim),
                ]
            return groups
        mlp = layer.mlp
        groups = [
            WeightGroup(mlp.gate_proj, "weight", 0, 1),
            WeightGroup(mlp.up_proj, "weight", 0, 1),
            WeightGroup(mlp.down_proj, "weight", 1, 1),
        ]
        if spec.mlp_bias:
            groups += [WeightGroup(mlp.gate_proj, "bias", 0, 1), WeightGroup(mlp.up_proj, "bias", 0, 1)]
        return groups

    def unit_output_module(self, layer: nn.Module, kind: Kind) -> nn.Module | None:
        if kind == "attn":
            attn = layer.self_attn
            return None if isinstance(attn, EmptyAttention) else attn.o_proj
        return layer.mlp.down_proj

    def output_unit_size(self, kind: Kind) -> int:
        return self.spec.heads_per_group * self.spec.head_dim if kind == "attn" else 1

    def residual_branch(self, layer: nn.Module, kind: Kind) -> nn.Module:
        return layer.self_attn if kind == "attn" else layer.mlp

    def slice_layer(self, layer: nn.Module, kind: Kind, positions: list[int]) -> None:
        if kind == "attn" and not positions:
            o_proj = layer.self_attn.o_proj
            layer.self_attn = EmptyAttention(layer.self_attn.layer_idx, self.spec.head_dim, o_proj.bias)
            return
        for group in self.weight_groups(layer, kind):
            index = unit_slots(positions, group.unit_size)
            _index_select_param(group.module, group.name, group.axis, index)
        if kind == "attn":
            attn = layer.self_attn
            for linear in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj):
                _fix_linear_dims(linear)
        else:
            mlp = layer.mlp
            for linear in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
                _fix_linear_dims(linear)
            mlp.intermediate_size = len(positions)

    def export_names(self) -> tuple[str, str, str]:
        names = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}[self.spec.family]
        return f"gisp_{self.spec.family}", f"Gisp{names}Config", f"Gisp{names}ForCausalLM"
