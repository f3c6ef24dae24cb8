"""Loading base models: a hub id, a local folder, or a GGUF file (converted once, see
`gisp.gguf_input`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from gisp.adapters import ArchitectureAdapter, adapter_for
from gisp.errors import ConfigError, ModelNotFoundError
from gisp.gguf_input import converted_folder, gguf_file_of

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    adapter: ArchitectureAdapter
    source: str
    revision: str | None


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {name!r}", field="dtype") from None


def load_config(source: str, revision: str | None = None) -> PretrainedConfig:
    """Read a model's config (a local folder or a hub id); a clear error when it cannot be found."""
    path = Path(source).expanduser()
    looks_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local and not (path / "config.json").is_file():
        raise ModelNotFoundError(f"model folder {source!r} does not exist or has no config.json", field="model")
    try:
        return AutoConfig.from_pretrained(
            str(path) if looks_local else source, revision=revision, trust_remote_code=False
        )
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load model {source!r}: {exc}".splitlines()[0], field="model") from exc


def context_length(config: PretrainedConfig) -> int | None:
    """The most positions the model was built for (None when its config does not say)."""
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def check_context(seq_len: int, config: PretrainedConfig) -> None:
    """A calibration window longer than the model's context is refused, naming both numbers."""
    limit = context_length(config)
    if limit is not None and seq_len > limit:
        raise ConfigError(f"seq_len {seq_len} exceeds the model's context length of {limit} tokens", field="seq_len")


def load_model(source: str, device: str = "cpu", dtype: str = "float32", revision: str | None = None) -> LoadedModel:
    """Load a supported causal LM and its tokenizer, in eval mode, on `device`. A GGUF file is
    loaded through its cached conversion and recorded as the file itself (its absolute path)."""
    gguf = gguf_file_of(source)
    if gguf is not None:
        loaded = load_model(str(converted_folder(gguf)), device=device, dtype=dtype)
        loaded.source = str(gguf)
        return loaded
    config = load_config(source, revision)
    adapter = adapter_for(config)  # fails before any weights are read
    try:
        model = AutoModelForCausalLM.from_pretrained(source, revision=revision, dtype=torch_dtype(dtype))
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot load model {source!r}: {exc}".splitlines()[0], field="model") from exc
    model.to(device)
    model.eval()
    local = Path(source).expanduser()
    # a local folder is recorded absolute, so a trajectory still finds its base from another cwd
    if (local / "config.json").is_file():
        return LoadedModel(model, tokenizer, adapter, str(local.resolve()), None)
    return LoadedModel(model, tokenizer, adapter, source, getattr(config, "_commit_hash", None))
