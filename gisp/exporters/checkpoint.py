"""Reading a checkpoint folder without loading the model: its per-layer widths from config.json and
its tensors one at a time from safetensors (memory-mapped), so that an exporter holds at most one
tensor besides what it writes."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from gisp.exporters.base import ExportError

FAMILIES = ("llama", "mistral", "qwen2")


@dataclass(frozen=True)
class CheckpointLayout:
    """What an exporter needs to know about a Llama-family checkpoint, pruned or dense."""

    folder: Path
    config: dict[str, Any]
    family: str
    num_layers: int
    hidden_size: int
    num_heads: int  # the base model's query heads
    num_kv_heads: int  # the base model's KV groups
    head_dim: int
    intermediate_size: int  # the base model's MLP width
    kv_groups: list[int]  # KV groups each layer keeps
    channels: list[int]  # MLP channels each layer keeps
    vocab_size: int
    tied_embeddings: bool
    rms_norm_eps: float
    max_positions: int
    rope: dict[str, Any] = field(default_factory=dict)
    sliding_window: int | None = None

    @property
    def heads_per_group(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def name(self) -> str:
        return self.folder.name

    @classmethod
    def read(cls, folder: str | Path) -> CheckpointLayout:
        folder = Path(folder)
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise ExportError(f"{folder} is not a checkpoint folder (no config.json)", field="checkpoint")
        config = json.loads(config_file.read_text())
        family = str(config.get("model_type", "")).removeprefix("gisp_")
        if family not in FAMILIES:
            raise ExportError(
                f"model_type {config.get('model_type')!r} cannot be exported; supported: {', '.join(FAMILIES)}",
                field="checkpoint",
            )
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        kv_groups = [int(x) for x in config.get("layer_num_key_value_heads") or [kv_heads] * layers]
        channels = [int(x) for x in config.get("layer_intermediate_sizes") or [config["intermediate_size"]] * layers]
        if len(kv_groups) != layers or len(channels) != layers:
            raise ExportError(f"{config_file}: per-layer widths do not match num_hidden_layers", field="checkpoint")
        rope = dict(config.get("rope_parameters") or {})
        if not rope:  # configs written before transformers 5
            rope = {"rope_theta": config.get("rope_theta", 10000.0), **(config.get("rope_scaling") or {})}
            rope.setdefault("rope_type", rope.pop("type", "default"))
        window = config.get("sliding_window") if config.get("use_sliding_window", True) else None
        return cls(
            folder=folder,
            config=config,
            family=family,
            num_layers=layers,
            hidden_size=int(config["hidden_size"]),
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=int(config.get("head_dim") or config["hidden_size"] // heads),
            intermediate_size=int(config["intermediate_size"]),
            kv_groups=kv_groups,
            channels=channels,
            vocab_size=int(config["vocab_size"]),
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            max_positions=int(config.get("max_position_embeddings", 2048)),
            rope=rope,
            sliding_window=int(window) if window else None,
        )


class TensorReader:
    """Named tensors of a folder's safetensors file(s), read lazily as float32 CPU tensors."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self._file_of = {name: folder / file for name, file in weight_map.items()}
        elif (folder / "model.safetensors").is_file():
            self._file_of = {}
            self._single = folder / "model.safetensors"
        else:
            raise ExportError(f"{folder} has no model.safetensors", field="checkpoint")
        self._stack = ExitStack()
        self._handles: dict[Path, Any] = {}
        if not self._file_of:
            handle = self._open(self._single)
            self._file_of = {name: self._single for name in handle.keys()}  # noqa: SIM118

    def _open(self, path: Path):
        if path not in self._handles:
            self._handles[path] = self._stack.enter_context(safe_open(str(path), framework="pt"))
        return self._handles[path]

    def names(self) -> list[str]:
        return list(self._file_of)

    def __contains__(self, name: object) -> bool:
        return name in self._file_of

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open(self._file_of[name]).get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        try:
            path = self._file_of[name]
        except KeyError:
            raise ExportError(f"{self.folder}: tensor {name} is missing", field="checkpoint") from None
        return self._open(path).get_tensor(name).to(torch.float32)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
