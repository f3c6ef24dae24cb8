"""A checkpoint's reconstructed tensors: the output projections of every layer (and, when the refit
covered them, the input projections' weights), by their names in the compact model's state dict,
saved as one safetensors file (same tensors, same bytes), applied to a compact model for export,
or viewed through the dense model for measuring without a copy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors.torch import load_file, save
from torch import Tensor, nn
from torch.nn import functional as F

from gisp.adapters import ArchitectureAdapter
from gisp.slots import unit_slots
from gisp.structure import Structure
from gisp.trajectory import CheckpointRecord

FILE_SUFFIX = ".safetensors"


def tensors_bytes(tensors: dict[str, Tensor]) -> bytes:
    """The safetensors serialization of `tensors`: the same tensors always give the same bytes."""
    return save({k: v.detach().cpu().contiguous() for k, v in sorted(tensors.items())})


def reconstruction_file(folder: str | Path, record: CheckpointRecord) -> Path:
    """Where a run's folder (beside trajectory.json) keeps a checkpoint's refit tensors."""
    return Path(folder) / "reconstruction" / f"{record.name}.safetensors"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file beside it (fsynced, renamed): never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_tensors(path: str | Path) -> dict[str, Tensor]:
    return load_file(str(path))


def apply_tensors(model: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Set the named parameters of a compact model (a bias it lacks is added)."""
    modules = dict(model.named_modules())
    for name, value in tensors.items():
        owner, attr = name.rsplit(".", 1)
        module = modules.get(owner)
        if module is None:
            raise ValueError(f"the model has no module {owner!r} for reconstructed tensor {name!r}")
        old = getattr(module, attr, None)
        device = next(model.parameters()).device
        dtype = old.dtype if isinstance(old, Tensor) else next(model.parameters()).dtype
        if isinstance(old, Tensor) and tuple(old.shape) != tuple(value.shape):
            raise ValueError(f"reconstructed tensor {name!r} is {tuple(value.shape)}, the model's {tuple(old.shape)}")
        setattr(module, attr, nn.Parameter(value.to(device=device, dtype=dtype).clone(), requires_grad=False))


@contextmanager
def reconstructed_view(
    model: nn.Module, adapter: ArchitectureAdapter, structure: Structure, tensors: dict[str, Tensor]
) -> Iterator[None]:
    """While open, the dense `model` computes the checkpoint: each output projection reads only the
    kept units' columns and uses its reconstructed weight (the removed units' work is discarded); a
    reconstructed input projection computes its kept units' rows with its reconstructed weight."""
    names = dict(model.named_modules())
    handles = []
    for index, layer in enumerate(adapter.layers(model)):
        for kind in ("attn", "mlp"):
            handles += _input_hooks(adapter, layer, kind, structure.kept(kind)[index], names, tensors)
            module = adapter.unit_output_module(layer, kind)
            prefix = next(n for n, m in names.items() if m is module)
            size = adapter.output_unit_size(kind)
            cols = unit_slots(structure.kept(kind)[index], size)
            weight = tensors.get(f"{prefix}.weight")
            bias = tensors.get(f"{prefix}.bias", tensors.get(f"{prefix.rsplit('.', 1)[0]}.o_bias"))
            if weight is None and bias is None and len(cols):
                continue  # a unit kind this refit left alone
            # no unit kept: the output is the bias alone, as the compact model's EmptyAttention or
            # width-0 down_proj gives (with no refit tensor, the dense bias it keeps)

            def hook(m: nn.Module, args: tuple, output: Tensor, cols=cols, weight=weight, bias=bias) -> Tensor:
                x = args[0]
                b = bias if bias is not None or len(cols) else m.bias
                b = None if b is None else b.to(x.dtype)
                if weight is None or len(cols) == 0:
                    out = x.new_zeros(output.shape)
                    return out if b is None else out + b
                return F.linear(x.index_select(-1, cols.to(x.device)), weight.to(x.device, x.dtype), b)

            handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _input_hooks(
    adapter: ArchitectureAdapter,
    layer: nn.Module,
    kind: str,
    kept: list[int],
    names: dict[str, nn.Module],
    tensors: dict[str, Tensor],
) -> list:
    """Hooks that give a dense input projection (q/k/v, gate/up) its reconstructed rows for `kept`."""
    handles = []
    for group in adapter.weight_groups(layer, kind):  # type: ignore[arg-type]
        if group.name != "weight" or group.axis != 0:
            continue
        module = group.module
        prefix = next(n for n, m in names.items() if m is module)
        weight = tensors.get(f"{prefix}.weight")
        if weight is None:
            continue
        rows = unit_slots(kept, group.unit_size)

        def hook(m: nn.Module, args: tuple, output: Tensor, rows=rows, weight=weight) -> Tensor:
            bias = None if m.bias is None else m.bias.index_select(0, rows.to(m.bias.device)).to(output.dtype)
            out = output.clone()
            out[..., rows.to(out.device)] = F.linear(args[0], weight.to(out.device, out.dtype), bias)
            return out

        handles.append(module.register_forward_hook(hook))
    return handles
