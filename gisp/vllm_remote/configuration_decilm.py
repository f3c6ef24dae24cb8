"""The DeciLM ("nemotron-nas") config layout as vLLM's DeciLMForCausalLM reads it: per layer,
`block_configs[i].attention` with `no_op` and `n_heads_in_group` (query heads per KV head; the
query-head count is the global `num_attention_heads`), and `block_configs[i].ffn` with `no_op` and
an exact `intermediate_size`. The ffn section has no `ffn_mult`: vLLM derives a rounded width
from ffn_mult when it exists and takes `intermediate_size` only when it does not.

`attention_bias` gives every o_proj a bias, `qkv_bias` the q/k/v projections theirs (vLLM's
reading of the two keys), `mlp_bias` every gate/up/down projection.
"""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig


class Section:
    """Attribute access to exactly the keys of one block section (vLLM tests `hasattr`)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class BlockConfig:
    def __init__(self, attention: dict[str, Any], ffn: dict[str, Any]) -> None:
        self.attention = Section(**attention)
        self.ffn = Section(**ffn)

    def to_dict(self) -> dict[str, Any]:
        return {"attention": self.attention.to_dict(), "ffn": self.ffn.to_dict()}


class DeciLMConfig(LlamaConfig):
    model_type = "nemotron-nas"

    def __init__(self, block_configs: list | None = None, qkv_bias: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.qkv_bias = qkv_bias
        self.block_configs = [
            block if isinstance(block, BlockConfig) else BlockConfig(**block) for block in block_configs or []
        ]

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["block_configs"] = [block.to_dict() for block in self.block_configs]
        return data
