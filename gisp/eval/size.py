"""Size of a model as it is: parameters, bytes in memory and on disk, and matmul FLOPs per token.

Widths are read from the modules themselves, so the same code serves a base model, a model sliced
in memory and an exported checkpoint loaded from its folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

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


def distinct_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Each parameter once (tied weights, such as a tied LM head, appear once)."""
    seen: set[int] = set()
    for param in model.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            yield param


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in distinct_parameters(model))


def folder_bytes(path: str | Path) -> int | None:
    """Bytes of a model folder on disk (None when `path` is no folder, e.g. a hub id)."""
    path = Path(path)
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def model_size(model: nn.Module) -> SizeReport:
    params = list(distinct_parameters(model))
    count = sum(p.numel() for p in params)
    nbytes = sum(p.numel() * p.element_size() for p in params)
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
