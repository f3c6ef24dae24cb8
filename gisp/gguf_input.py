"""GGUF files as base models: people who run llama.cpp hold their models as `.gguf`. A GGUF file
(or a folder holding exactly one and no config.json) is dequantized once through transformers'
own GGUF loader into a standard Hugging Face folder, cached under `GISP_CACHE` (default
~/.cache/gisp) so the next run does not convert again. The cache key is the file's path, size and
modification time; the folder records the file's sha256 for provenance.

transformers rebuilds a GGUF's BPE tokenizer with GPT-2's splitting whatever the file's
`tokenizer.ggml.pre` says; where that name is one llama.cpp and this package both know (e.g.
SmolLM2's "smollm": every digit alone), the converted tokenizer.json gets the file's splitting
back, so pruning tokenizes as the model does and a GGUF export names the same pre-tokenizer."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from gisp.errors import ConfigError, ModelNotFoundError

SUFFIX = ".gguf"
PROVENANCE = "gisp_gguf_source.json"
CONVERSION_VERSION = 2  # part of the cache key: bumped when a conversion changes (2: pre-tokenizer kept)


def gguf_file_of(source: str | Path) -> Path | None:
    """The GGUF file `source` names (the file, or the one .gguf in a folder without config.json)."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == SUFFIX:
        return path.resolve()
    if path.is_dir() and not (path / "config.json").is_file():
        files = sorted(path.glob(f"*{SUFFIX}"))
        if len(files) > 1:
            names = ", ".join(f.name for f in files)
            raise ConfigError(f"{source!r} holds several GGUF files ({names}); name one", field="model")
        if files:
            return files[0].resolve()
    return None


def cache_root() -> Path:
    return Path(os.environ.get("GISP_CACHE", "~/.cache/gisp")).expanduser()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def restore_pre_tokenizer(gguf_file: Path, tokenizer_json: Path) -> str | None:
    """Give `tokenizer_json` the splitting GGUF file `gguf_file` names; returns that name."""
    from gguf import GGUFReader

    from gisp.exporters.gguf_vocab import pre_tokenizer_json

    field = GGUFReader(gguf_file).fields.get("tokenizer.ggml.pre")
    name = str(field.contents()) if field is not None else None
    wanted = pre_tokenizer_json(name) if name else None
    if wanted is not None and tokenizer_json.is_file():
        data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        data["pre_tokenizer"] = wanted
        tokenizer_json.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return name


def converted_folder(path: Path) -> Path:
    """The cached Hugging Face folder for GGUF file `path`, converting it on first use."""
    stat = path.stat()
    identity = f"{CONVERSION_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    out = cache_root() / "gguf" / f"{path.stem}-{key}"
    if (out / PROVENANCE).is_file():
        return out
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelNotFoundError(
            f"reading GGUF file {path.name} needs {', '.join(missing)}: pip install 'gisp-service[gguf]'", field="model"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFoundError(f"cannot read GGUF file {path}: {exc}".splitlines()[0], field="model") from exc
    model.hf_quantizer = None  # a dequantized float model from here on
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        pre = restore_pre_tokenizer(path, tmp / "tokenizer.json")
        provenance = {
            "gguf_file": str(path.resolve()),
            "sha256": file_sha256(path),
            "bytes": stat.st_size,
            "tokenizer_pre": pre,
        }
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=1))
        if out.exists():  # another process converted it meanwhile
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
