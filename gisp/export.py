"""Materializing checkpoints from a trajectory and writing them as Hugging Face folders.

A folder holds config.json (per-layer widths, auto_map to the model code beside it),
model.safetensors, tokenizer files, the two remote-code modules of `gisp.hf_remote` and a model
card. It loads with `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)` without
this package, or with `load_pruned(path)`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from gisp.hf_remote import configuration_gisp, modeling_gisp
from gisp.loading import LoadedModel, load_model
from gisp.structure import Structure
from gisp.trajectory import CheckpointRecord, Trajectory

REMOTE_FILES = (Path(configuration_gisp.__file__), Path(modeling_gisp.__file__))


def materialize(
    trajectory: Trajectory, target: float, base: LoadedModel | None = None, device: str = "cpu"
) -> LoadedModel:
    """The checkpoint's compact model: the base model (loaded unless given) sliced to its structure.

    A given `base` must be unpruned; it is sliced in place.
    """
    record = trajectory.checkpoint(target)
    loaded = base or load_model(
        trajectory.base_model,
        device=device,
        dtype=trajectory.settings.get("dtype", "float32"),
        revision=trajectory.base_revision,
    )
    loaded.adapter.slice_model(loaded.model, Structure.full(loaded.adapter.spec), record.structure)
    apply_weights(loaded, record)
    return loaded


def apply_weights(loaded: LoadedModel, record: CheckpointRecord) -> None:
    """Put the checkpoint's own weights (a method's re-solved output projections) into the model
    sliced to its structure."""
    layers = loaded.adapter.layers(loaded.model)
    for key, tensor in record.weights.items():
        layer, kind = key.split(".")
        module = loaded.adapter.unit_output_module(layers[int(layer)], kind)  # type: ignore[arg-type]
        if module is None or tuple(module.weight.shape) != tuple(tensor.shape):
            shape = None if module is None else tuple(module.weight.shape)
            raise ValueError(f"{record.name}: weight {key} {tuple(tensor.shape)} does not fit the model ({shape})")
        with torch.no_grad():
            module.weight.copy_(tensor.to(module.weight.dtype))


def pruned_config_dict(trajectory: Trajectory, record: CheckpointRecord, adapter_names: tuple[str, str, str]) -> dict:
    model_type, config_class, model_class = adapter_names
    config = dict(trajectory.base_config)
    kv_heads, widths = record.structure.layer_widths()
    config.update(
        model_type=model_type,
        architectures=[model_class],
        auto_map={
            "AutoConfig": f"configuration_gisp.{config_class}",
            "AutoModelForCausalLM": f"modeling_gisp.{model_class}",
        },
        layer_num_key_value_heads=kv_heads,
        layer_intermediate_sizes=widths,
        gisp={
            "base_model": trajectory.base_model,
            "base_revision": trajectory.base_revision,
            "target_sparsity": record.target,
            "sparsity": record.sparsity,
            "kept_kv_groups": record.structure.attn,
            "kept_channels": record.structure.mlp,
        },
    )
    for key in ("_commit_hash", "transformers_version", "_name_or_path"):
        config.pop(key, None)
    return config


def model_card(trajectory: Trajectory, record: CheckpointRecord) -> str:
    s = trajectory.settings
    metrics = "\n".join(f"| {k} | {v:.4g} |" for k, v in sorted(record.metrics.items())) or "| (none measured) | |"
    kv, widths = record.structure.layer_widths()
    return f"""---
base_model: {trajectory.base_model}
library_name: transformers
tags: [pruned, structured-pruning, gisp]
---
# {Path(trajectory.base_model).name} pruned to {record.target:.0%} sparsity

Structured pruning of `{trajectory.base_model}` with {s.get("method")} (Global Iterative Structured Pruning,
arXiv 2510.18030): whole KV groups (attention) and MLP channels were removed, with importance from the
`{trajectory.objective}` objective on calibration data (sha256 `{trajectory.data_sha256[:16]}…`).

| | |
|---|---|
| method | {s.get("method")} ({s.get("importance")} importance, {s.get("normalization")} normalization) |
| objective | {trajectory.objective} |
| steps | {trajectory.total_steps} |
| target sparsity | {record.target:g} |
| achieved sparsity (attention+MLP parameters removed) | {record.sparsity:.4f} |
| parameters | {record.parameter_count:,} |
| FLOPs per token | {record.flops_per_token:,} |
| calibration | {s.get("samples")} samples × {s.get("seq_len")} tokens, seed {s.get("seed")} |

Kept KV groups per layer: {kv}; kept MLP channels per layer: {widths}.

## Metrics
| metric | value |
|---|---|
{metrics}

## Loading
```python
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(PATH, trust_remote_code=True)
```
"""


def copy_sentencepiece_model(tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """Keep the base model's sentencepiece `tokenizer.model` beside tokenizer.json: transformers
    saves only the latter, and llama.cpp's GGUF tokenizer is built from the former."""
    source = getattr(tokenizer, "vocab_file", None)
    target = folder / "tokenizer.model"
    if source and Path(source).name == target.name and Path(source).is_file() and not target.exists():
        shutil.copyfile(source, target)


@contextmanager
def atomic_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a temp folder beside `out_dir`; when the block completes its files are fsynced and it
    replaces `out_dir` (renamed in one step); when it fails it is removed."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        yield tmp
        for path in (p for p in tmp.rglob("*") if p.is_file()):
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    trajectory: Trajectory,
    record: CheckpointRecord,
    adapter_names: tuple[str, str, str],
    out_dir: str | Path,
) -> Path:
    """Write the folder atomically: build it in a temp dir beside `out_dir`, then rename."""
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        copy_sentencepiece_model(tokenizer, tmp)
        (tmp / "config.json").write_text(json.dumps(pruned_config_dict(trajectory, record, adapter_names), indent=2))
        for source in REMOTE_FILES:
            shutil.copyfile(source, tmp / source.name)
        (tmp / "README.md").write_text(model_card(trajectory, record))
    return out_dir


def export_checkpoint(
    trajectory: Trajectory, target: float, out_dir: str | Path, base: LoadedModel | None = None
) -> Path:
    """Materialize the checkpoint for `target` and write it to `out_dir`."""
    loaded = materialize(trajectory, target, base)
    record = trajectory.checkpoint(target)
    return save_checkpoint(loaded.model, loaded.tokenizer, trajectory, record, loaded.adapter.export_names(), out_dir)


def export_all(trajectory: Trajectory, out_dir: str | Path, base: LoadedModel | None = None) -> list[Path]:
    """Write every checkpoint to `out_dir/sparsity-X.XX/`. Nested checkpoints with the base weights
    come from one base load, sliced further from one to the next; any other is materialized from a
    fresh load of the base model."""

    def fresh() -> LoadedModel:
        return load_model(
            trajectory.base_model, dtype=trajectory.settings.get("dtype", "float32"), revision=trajectory.base_revision
        )

    loaded = base or fresh()
    current: Structure | None = Structure.full(loaded.adapter.spec)
    paths = []
    for record in sorted(trajectory.checkpoints, key=lambda r: r.target):
        if current is not None and not record.weights and record.structure.is_subset_of(current):
            loaded.adapter.slice_model(loaded.model, current, record.structure)
            current = record.structure
        else:
            loaded = materialize(trajectory, record.target, fresh())
            current = None  # its weights are its own: the next checkpoint starts from the base again
        paths.append(
            save_checkpoint(
                loaded.model,
                loaded.tokenizer,
                trajectory,
                record,
                loaded.adapter.export_names(),
                Path(out_dir) / record.name,
            )
        )
    return paths


def load_pruned(path: str | Path, device: str = "cpu") -> nn.Module:
    """Load an exported folder with this package's copy of the model code (no remote code)."""
    config_data = json.loads((Path(path) / "config.json").read_text())
    name = config_data.get("architectures", [""])[0]
    cls = getattr(modeling_gisp, name, None)
    if cls is None:
        raise ValueError(f"{path} is not a gisp checkpoint (architectures={config_data.get('architectures')})")
    model = cls.from_pretrained(str(path))
    return model.to(device).eval()
