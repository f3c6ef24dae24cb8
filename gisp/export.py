"""Materializing checkpoints from a trajectory and writing them as Hugging Face folders.

A folder holds config.json (per-layer widths, auto_map to the model code beside it),
model.safetensors, tokenizer files, the two remote-code modules of `gisp.hf_remote` and a model
card. It loads with `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)` without
this package, or with `load_pruned(path)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from gisp.errors import ConfigError
from gisp.hf_remote import configuration_gisp, modeling_gisp
from gisp.loading import LoadedModel, load_model
from gisp.reconstruction.tensors import apply_tensors, load_tensors, reconstruction_file, tensors_bytes
from gisp.structure import Structure
from gisp.trajectory import CheckpointRecord, Trajectory

REMOTE_FILES = (Path(configuration_gisp.__file__), Path(modeling_gisp.__file__))


Tensors = dict[str, Tensor]


def checkpoint_tensors(record: CheckpointRecord, tensors: Tensors | str | Path | None) -> Tensors | None:
    """The refit tensors of `record`, read from a file if a path is given, checked against the
    trajectory's sha256; None for a checkpoint that was not reconstructed."""
    if record.reconstruction is None:
        return None
    if tensors is None:
        raise ConfigError(
            f"checkpoint {record.name} was reconstructed ({record.reconstruction}); its tensors are needed "
            f"(reconstruction/{record.name}.safetensors beside the trajectory)",
            field="reconstruction",
        )
    if not isinstance(tensors, dict):
        if not Path(tensors).is_file():
            raise ConfigError(f"reconstructed tensors {tensors} do not exist", field="reconstruction")
        tensors = load_tensors(tensors)
    if (
        record.reconstruction_sha256
        and hashlib.sha256(tensors_bytes(tensors)).hexdigest() != record.reconstruction_sha256
    ):
        raise ConfigError(
            f"the reconstructed tensors of {record.name} do not match the trajectory", field="reconstruction"
        )
    return tensors


def materialize(
    trajectory: Trajectory,
    target: float,
    base: LoadedModel | None = None,
    device: str = "cpu",
    tensors: Tensors | str | Path | None = None,
) -> LoadedModel:
    """The checkpoint's compact model: the base model (loaded unless given) sliced to its structure,
    with its reconstructed output projections when it has them (`tensors`, or the file they are in).

    A given `base` must be unpruned; it is sliced in place.
    """
    record = trajectory.checkpoint(target)
    refit = checkpoint_tensors(record, tensors)
    loaded = base or load_model(
        trajectory.base_model,
        device=device,
        dtype=trajectory.settings.get("dtype", "float32"),
        revision=trajectory.base_revision,
    )
    loaded.adapter.slice_model(loaded.model, Structure.full(loaded.adapter.spec), record.structure)
    if refit is not None:
        apply_tensors(loaded.model, refit)
    return loaded


def pruned_config_dict(
    trajectory: Trajectory, record: CheckpointRecord, adapter_names: tuple[str, str, str], output_bias: bool = False
) -> dict:
    model_type, config_class, model_class = adapter_names
    config = dict(trajectory.base_config)
    if output_bias:  # the folder's model code gives o_proj/down_proj the biases the refit wrote
        config["output_bias"] = True
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
            "reconstruction": record.reconstruction,
            "reconstruction_sha256": record.reconstruction_sha256,
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
    output_bias: bool = False,
) -> Path:
    """Write the folder atomically: build it in a temp dir beside `out_dir`, then rename."""
    out_dir = Path(out_dir)
    config = pruned_config_dict(trajectory, record, adapter_names, output_bias)
    with atomic_folder(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        copy_sentencepiece_model(tokenizer, tmp)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        for source in REMOTE_FILES:
            shutil.copyfile(source, tmp / source.name)
        (tmp / "README.md").write_text(model_card(trajectory, record))
    return out_dir


def export_checkpoint(
    trajectory: Trajectory,
    target: float,
    out_dir: str | Path,
    base: LoadedModel | None = None,
    tensors: Tensors | str | Path | None = None,
) -> Path:
    """Materialize the checkpoint for `target` (with its reconstructed `tensors`, or the file they
    are in, when it was reconstructed) and write it to `out_dir`."""
    record = trajectory.checkpoint(target)
    refit = checkpoint_tensors(record, tensors)
    loaded = materialize(trajectory, target, base, tensors=refit)
    bias = refit is not None and _adds_bias(trajectory, refit)
    names = loaded.adapter.export_names()
    return save_checkpoint(loaded.model, loaded.tokenizer, trajectory, record, names, out_dir, bias)


def _adds_bias(trajectory: Trajectory, tensors: Tensors) -> bool:
    arch = trajectory.arch
    has = {"o_proj.bias": arch.o_bias, "o_bias": arch.o_bias, "down_proj.bias": arch.mlp_bias}
    return any(name.endswith(suffix) and not present for name in tensors for suffix, present in has.items())


def export_all(
    trajectory: Trajectory, out_dir: str | Path, base: LoadedModel | None = None, tensors_dir: str | Path | None = None
) -> list[Path]:
    """Write every checkpoint to `out_dir/sparsity-X.XX/` from one base load: nested checkpoints
    are sliced further from one to the next (each reconstructed checkpoint's refit tensors, from
    `tensors_dir/reconstruction/`, replace every tensor its refit wrote); a checkpoint that is not a
    subnetwork of the one before (a search-based method's), or one kept as cut after a refit one,
    starts from a fresh base load."""

    def fresh() -> LoadedModel:
        return load_model(
            trajectory.base_model, dtype=trajectory.settings.get("dtype", "float32"), revision=trajectory.base_revision
        )

    loaded = base or fresh()
    current = Structure.full(loaded.adapter.spec)
    carries_refit = False  # the loaded model holds an earlier checkpoint's refit weights
    paths = []
    for record in sorted(trajectory.checkpoints, key=lambda r: r.target):
        where = reconstruction_file(tensors_dir, record) if tensors_dir is not None else None
        refit = checkpoint_tensors(record, where)
        # a checkpoint kept as cut (the guard rejected its refit) must not inherit the refit weights
        # of the one before; a refit checkpoint replaces every tensor the refit of one run writes
        if not record.structure.is_subset_of(current) or (refit is None and carries_refit):
            loaded, current, carries_refit = fresh(), Structure.full(loaded.adapter.spec), False
        loaded.adapter.slice_model(loaded.model, current, record.structure)
        current = record.structure
        if refit is not None:
            apply_tensors(loaded.model, refit)
            carries_refit = True
        bias = refit is not None and _adds_bias(trajectory, refit)
        out = Path(out_dir) / record.name
        paths.append(
            save_checkpoint(
                loaded.model, loaded.tokenizer, trajectory, record, loaded.adapter.export_names(), out, bias
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
