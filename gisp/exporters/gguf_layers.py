"""How each pruned layer is written for llama.cpp's `deci` architecture, and what that costs.

The deci graph (llama.cpp src/models/deci.cpp) builds every layer with its own head_count,
head_count_kv and feed_forward_length, and treats head_count 0 as an attention-free layer and
feed_forward_length 0 as an FFN-free layer. Three of its paths cannot represent a pruned layer
as it is, so the exporter adds zero-weight units that leave the outputs exact:

* feed_forward_length 0 with attention kept: the graph skips the layer's residual add (it
  `continue`s before it), so the attention output would be dropped;
* feed_forward_length 0 without attention (an identity layer): graph allocation fails;
  so a layer that keeps no MLP channel is written with ONE zero channel (gate/up rows and the
  down column zero: silu(0)*0 = 0). Cost: 3 x hidden weights, nothing in the KV cache.
* head_count 0 in layer 0: llama.cpp derives the head size from layer 0 (and reads key_length
  only when layer 0 has heads), so every layer would get head size 0;
* head_count 0 where the checkpoint has an o_proj bias: the attention-free path adds nothing, not
  even the bias;
  so such a layer is written with ONE zero KV group (q/k/v rows and o_proj columns zero: the
  attention output is exactly 0, plus the bias). Cost: 2 x (heads_per_group + 1) x head_dim x hidden
  weights, 2 x head_dim KV-cache values per token, and that group's attention compute.

Zero channels also round every MLP width up to a multiple of `align` (default 32): llama.cpp's
fast CPU matrix multiply (llamafile's tinyBLAS, used for prompt processing) refuses an inner
dimension that is not a multiple of its vector width (8 or 16 values) and falls back to a slower
path, and a Q8_0 row must split into 32-value blocks (else the tensor is written as F16). GISP
leaves arbitrary widths; the rounding costs at most align - 1 channels (3 x hidden weights each)
per layer. `align=1` writes the widths as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from gisp.exporters.checkpoint import CheckpointLayout


@dataclass(frozen=True)
class WrittenLayer:
    index: int
    kept_groups: int  # KV groups the checkpoint keeps
    kept_channels: int
    zero_group: bool  # one zero-weight KV group appended
    zero_channels: int  # zero-weight MLP channels appended
    reason: str = ""

    @property
    def groups(self) -> int:
        return self.kept_groups + int(self.zero_group)

    @property
    def channels(self) -> int:
        return self.kept_channels + self.zero_channels


def plan_layers(layout: CheckpointLayout, o_bias_layers: set[int], align: int = 32) -> list[WrittenLayer]:
    """The layers as written; `o_bias_layers` are those whose attention output has a bias."""
    out = []
    for index, (groups, channels) in enumerate(zip(layout.kv_groups, layout.channels, strict=True)):
        reasons = []
        zero_group = groups == 0 and (index == 0 or index in o_bias_layers)
        if zero_group:
            reasons.append("layer 0 sets the head size" if index == 0 else "keeps its o_proj bias")
        if channels == 0:
            reasons.append("identity layer" if groups == 0 and not zero_group else "keeps its attention output")
        written = -(-max(channels, 1) // align) * align
        out.append(WrittenLayer(index, groups, channels, zero_group, written - channels, "; ".join(reasons)))
    return out


def padding_cost(layout: CheckpointLayout, layers: list[WrittenLayer]) -> dict[str, int]:
    """Weights and per-token KV-cache values the zero units add, for the export's report."""
    group_weights = 2 * (layout.heads_per_group + 1) * layout.head_dim * layout.hidden_size
    groups = sum(layer.zero_group for layer in layers)
    channels = sum(layer.zero_channels for layer in layers)
    return {
        "zero_groups": groups,
        "zero_channels": channels,
        "added_weights": groups * group_weights + channels * 3 * layout.hidden_size,
        "added_kv_values_per_token": groups * 2 * layout.head_dim,
    }
