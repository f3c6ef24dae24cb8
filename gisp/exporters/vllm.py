"""The `vllm` exporter: a checkpoint padded into the DeciLM ("nemotron-nas") layout that stock
vLLM's DeciLMForCausalLM serves, with exact outputs.

That layout has, per layer, a no-op attention or `n_heads_in_group` (so the KV-head count varies
but every attention layer has the global query-head count H), and a no-op FFN or an exact
`intermediate_size`. GISP removes a KV group together with its query heads, so a layer keeping g
groups is written with d KV heads, d the smallest divisor of H not below g: KV head j < g holds
group j's keys and values and its query heads fill the first slots of that head's H/d query slots;
the other query slots, the d - g dummy KV heads and the o_proj columns of every padded slot are
zero. A zero query head attends uniformly to its values and its output meets zero o_proj columns,
so the outputs are exact.

Kept: the MLP savings (exact widths) and the KV-cache savings down to d heads per layer; layers
with no group or no channel become no-ops. Lost: the q_proj/o_proj savings (every attention layer
computes H query heads) and the KV heads between g and d. Exceptions, as in the GGUF export:
layer 0 keeps one zero KV head (vLLM's DeciLM layer cannot start the residual stream with a
no-op attention), and a layer with an output bias but no unit keeps one zero unit so that the bias
is applied. The exact route, without the padding, is the vLLM plugin in `gisp.vllm_plugin`.

Weights are written one shard per layer, so at most one layer is in memory.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from gisp.exporters.base import Exporter, ExportError, register_exporter
from gisp.exporters.checkpoint import CheckpointLayout, TensorReader
from gisp.vllm_remote import configuration_decilm, modeling_decilm

REMOTE_FILES = (Path(configuration_decilm.__file__), Path(modeling_decilm.__file__))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json")  # fmt: skip


@dataclass(frozen=True)
class PaddedLayer:
    index: int
    kept_groups: int
    kv_heads: int  # 0: no-op attention
    channels: int  # 0: no-op FFN
    kept_channels: int


def smallest_divisor_at_least(total: int, least: int) -> int:
    return next(d for d in range(max(least, 1), total + 1) if total % d == 0)


def plan_padded(layout: CheckpointLayout, o_bias: set[int], down_bias: set[int]) -> list[PaddedLayer]:
    out = []
    for i, (groups, channels) in enumerate(zip(layout.kv_groups, layout.channels, strict=True)):
        needs_attention = groups > 0 or i == 0 or i in o_bias
        kv = smallest_divisor_at_least(layout.num_heads, groups) if needs_attention else 0
        width = channels if channels > 0 else int(i in down_bias)
        out.append(PaddedLayer(i, groups, kv, width, channels))
    return out


def _query_slots(layout: CheckpointLayout, layer: PaddedLayer) -> list[int | None]:
    """For each of the H query-head slots, the kept query head (position in the compact layer)
    it holds, or None for a zero slot."""
    per_kv, hpg = layout.num_heads // layer.kv_heads, layout.heads_per_group
    return [
        kv * hpg + slot if kv < layer.kept_groups and slot < hpg else None
        for kv in range(layer.kv_heads)
        for slot in range(per_kv)
    ]


def _head_rows(t: torch.Tensor | None, slots: list[int | None], head_dim: int, tail: tuple[int, ...]) -> torch.Tensor:
    """Stack head blocks of `t` (rows of head_dim per head) in `slots` order, zeros for None."""
    zeros = torch.zeros((head_dim, *tail))
    blocks = [zeros if s is None or t is None else t[s * head_dim : (s + 1) * head_dim] for s in slots]
    return torch.cat(blocks) if blocks else torch.zeros((0, *tail))


class _LayerWriter:
    def __init__(self, layout: CheckpointLayout, reader: TensorReader, bias: dict[str, bool]) -> None:
        self.layout, self.reader, self.bias = layout, reader, bias

    def get(self, name: str, kept: bool) -> torch.Tensor | None:
        return self.reader.get(name) if kept and name in self.reader else None

    def attention(self, layer: PaddedLayer, p: str) -> dict[str, torch.Tensor]:
        layout, hd, hidden = self.layout, self.layout.head_dim, self.layout.hidden_size
        kept = layer.kept_groups > 0
        q_slots = _query_slots(layout, layer)
        kv_slots = [j if j < layer.kept_groups else None for j in range(layer.kv_heads)]
        out = {p + "input_layernorm.weight": self.reader.get(p + "input_layernorm.weight")}
        a = p + "self_attn."
        out[a + "q_proj.weight"] = _head_rows(self.get(a + "q_proj.weight", kept), q_slots, hd, (hidden,))
        for proj in ("k", "v"):
            out[f"{a}{proj}_proj.weight"] = _head_rows(
                self.get(f"{a}{proj}_proj.weight", kept), kv_slots, hd, (hidden,)
            )
        if self.bias["qkv"]:
            out[a + "q_proj.bias"] = _head_rows(self.get(a + "q_proj.bias", kept), q_slots, hd, ())
            for proj in ("k", "v"):
                out[f"{a}{proj}_proj.bias"] = _head_rows(self.get(f"{a}{proj}_proj.bias", kept), kv_slots, hd, ())
        o = self.get(a + "o_proj.weight", kept)
        out[a + "o_proj.weight"] = _head_rows(None if o is None else o.T, q_slots, hd, (hidden,)).T.contiguous()
        if self.bias["o"]:
            source = next((n for n in (a + "o_proj.bias", a + "o_bias") if n in self.reader), None)
            out[a + "o_proj.bias"] = self.reader.get(source) if source else torch.zeros(hidden)
        return out

    def mlp(self, layer: PaddedLayer, p: str) -> dict[str, torch.Tensor]:
        hidden, kept, extra = self.layout.hidden_size, layer.kept_channels, layer.channels - layer.kept_channels
        m = p + "mlp."
        out = {p + "post_attention_layernorm.weight": self.reader.get(p + "post_attention_layernorm.weight")}

        def rows(name: str, tail: tuple[int, ...]) -> torch.Tensor:
            t = self.get(name, kept > 0)
            t = torch.zeros((kept, *tail)) if t is None else t
            return torch.cat([t, torch.zeros((extra, *tail))]) if extra else t

        out[m + "gate_proj.weight"] = rows(m + "gate_proj.weight", (hidden,))
        out[m + "up_proj.weight"] = rows(m + "up_proj.weight", (hidden,))
        down = self.get(m + "down_proj.weight", kept > 0)
        down = torch.zeros((hidden, kept)) if down is None else down
        out[m + "down_proj.weight"] = torch.cat([down, torch.zeros((hidden, extra))], dim=1) if extra else down
        if self.bias["mlp"]:
            out[m + "gate_proj.bias"] = rows(m + "gate_proj.bias", ())
            out[m + "up_proj.bias"] = rows(m + "up_proj.bias", ())
            out[m + "down_proj.bias"] = self.get(m + "down_proj.bias", True)
            if out[m + "down_proj.bias"] is None:
                out[m + "down_proj.bias"] = torch.zeros(hidden)
        return out


def _bias_layers(reader: TensorReader, layout: CheckpointLayout, *suffixes: str) -> set[int]:
    names = set(reader.names())
    return {i for i in range(layout.num_layers) if any(f"model.layers.{i}.{s}" in names for s in suffixes)}


def decilm_config(layout: CheckpointLayout, layers: list[PaddedLayer], bias: dict[str, bool]) -> dict[str, Any]:
    config = {
        k: v for k, v in layout.config.items() if k not in ("layer_num_key_value_heads", "layer_intermediate_sizes")
    }
    config.update(
        model_type="nemotron-nas",
        architectures=["DeciLMForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_decilm.DeciLMConfig",
            "AutoModelForCausalLM": "modeling_decilm.DeciLMForCausalLM",
        },
        num_key_value_heads=max(layer.kv_heads for layer in layers),
        intermediate_size=max([layer.channels for layer in layers] + [1]),
        head_dim=layout.head_dim,
        attention_bias=bias["o"],
        qkv_bias=bias["qkv"],
        mlp_bias=bias["mlp"],
        block_configs=[
            {
                "attention": {"no_op": layer.kv_heads == 0, "replace_with_linear": False, "n_heads_in_group":
                              layout.num_heads // layer.kv_heads if layer.kv_heads else None},
                "ffn": {"no_op": layer.channels == 0, "replace_with_linear": False,
                        "intermediate_size": layer.channels or None},
            }
            for layer in layers
        ],
    )  # fmt: skip
    for key in ("sliding_window", "use_sliding_window", "max_window_layers", "layer_types"):
        config.pop(key, None)
    return config


def write_padded(folder: str | Path, out: str | Path) -> dict[str, Any]:
    from gisp.export import atomic_folder

    layout = CheckpointLayout.read(folder)
    if layout.sliding_window and layout.sliding_window < layout.max_positions:
        raise ExportError("vLLM's DeciLM layout has no sliding-window attention; this checkpoint uses one")
    out = Path(out)
    with TensorReader(layout.folder) as reader, atomic_folder(out) as tmp:
        o_bias = _bias_layers(reader, layout, "self_attn.o_proj.bias", "self_attn.o_bias")
        down_bias = _bias_layers(reader, layout, "mlp.down_proj.bias")
        bias = {
            "o": bool(o_bias),
            "qkv": any(n.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")) for n in reader.names()),
            "mlp": bool(down_bias) or any(n.endswith(("gate_proj.bias", "up_proj.bias")) for n in reader.names()),
        }
        layers = plan_padded(layout, o_bias, down_bias)
        writer = _LayerWriter(layout, reader, bias)

        def shards():  # produced one at a time: at most one layer's tensors in memory
            yield {"model.embed_tokens.weight": reader.get("model.embed_tokens.weight")}
            for layer in layers:
                prefix = f"model.layers.{layer.index}."
                attention = writer.attention(layer, prefix) if layer.kv_heads else {}
                yield attention | (writer.mlp(layer, prefix) if layer.channels else {})
            final = {"model.norm.weight": reader.get("model.norm.weight")}
            if not layout.tied_embeddings:
                final["lm_head.weight"] = reader.get("lm_head.weight")
            yield final

        count = len(layers) + 2
        weight_map: dict[str, str] = {}
        total = 0
        for number, shard in enumerate(shards(), start=1):
            name = f"model-{number:05d}-of-{count:05d}.safetensors"
            tensors = {k: v.contiguous() for k, v in shard.items()}
            save_file(tensors, str(tmp / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(tensors, name))
            total += sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
        (tmp / "config.json").write_text(json.dumps(decilm_config(layout, layers, bias), indent=2))
        for source in REMOTE_FILES:
            shutil.copyfile(source, tmp / source.name)
        for name in TOKENIZER_FILES:
            if (layout.folder / name).is_file():
                shutil.copyfile(layout.folder / name, tmp / name)
    return {
        "path": str(out),
        "kv_heads": [layer.kv_heads for layer in layers],
        "kept_kv_groups": layout.kv_groups,
        "query_heads": [layout.num_heads if layer.kv_heads else 0 for layer in layers],
        "intermediate_sizes": [layer.channels for layer in layers],
        "bytes": total,
    }


@register_exporter
class VllmExporter(Exporter):
    name = "vllm"
    suffix = ""
    help = "a DeciLM (nemotron-nas) folder that stock vLLM serves (padded; exact outputs)"

    def write(self, folder: Path, out: Path, **options: Any) -> dict[str, Any]:
        return write_padded(folder, out)
