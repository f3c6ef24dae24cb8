"""Size of a model as it is: parameters, bytes in memory, and matmul FLOPs per token.

Widths are read from the modules themselves, so the same code serves a base model, a model sliced
in memory and an exported checkpoint loaded from its folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from gisp.adapters import adapter_for
from gisp.hf_remote.modeling_gisp import EmptyAttention
from gisp.structure import ArchSpec, Structure


@dataclass
class SizeReport:
    parameters: int  # distinct parameters (tied weights once)
    parameter_bytes: int  # their bytes in memory at the loaded dtype
    flops_per_token: int  # matmul FLOPs of one token, no attention context
    flops_per_token_ctx512: int  # ... with 512 cached tokens of attention context
    kv_groups_per_layer: list[int]
    channels_per_layer: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


def model_structure(model: nn.Module) -> tuple[ArchSpec, Structure]:
    """The base-model spec from the config and a structure with the model's actual widths."""
    adapter = adapter_for(model.config)
    spec = adapter.spec
    attn, mlp = [], []
    for layer in adapter.layers(model):
        module = adapter.unit_output_module(layer, "attn")
        groups = 0 if module is None or isinstance(layer.self_attn, EmptyAttention) else module.in_features
        attn.append(list(range(groups // adapter.output_unit_size("attn"))))
        mlp.append(list(range(adapter.unit_output_module(layer, "mlp").in_features)))
    return spec, Structure(attn=attn, mlp=mlp)


def model_size(model: nn.Module) -> SizeReport:
    seen: set[int] = set()
    count = nbytes = 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        count += param.numel()
        nbytes += param.numel() * param.element_size()
    spec, structure = model_structure(model)
    kv, widths = structure.layer_widths()
    return SizeReport(
        parameters=count,
        parameter_bytes=nbytes,
        flops_per_token=structure.flops_per_token(spec),
        flops_per_token_ctx512=structure.flops_per_token(spec, context=512),
        kv_groups_per_layer=kv,
        channels_per_layer=widths,
    )
