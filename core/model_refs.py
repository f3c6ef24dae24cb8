"""Model references in jobs: a hub id shaped `org/name`, or the name of a folder under one of the
configured model roots (a Hugging Face folder, or one holding a GGUF file). Never a filesystem
path: a tenant must not make the worker read arbitrary files."""

from __future__ import annotations

import json
import re
from pathlib import Path

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
HUB_ID = re.compile(rf"^{_NAME}/{_NAME}$")
LOCAL_NAME = re.compile(rf"^{_NAME}$")


class InvalidModelRef(ValueError):
    pass


def is_model_folder(path: Path) -> bool:
    """A Hugging Face folder (config.json) or a folder holding one GGUF file."""
    return (path / "config.json").is_file() or (path.is_dir() and any(path.glob("*.gguf")))


def local_folder(name: str, roots: list[Path]) -> Path | None:
    if not LOCAL_NAME.match(name) or ".." in name:
        return None
    for root in roots:
        candidate = root / name
        if is_model_folder(candidate):
            return candidate
    return None


def check(name: str, roots: list[Path]) -> None:
    """Raise InvalidModelRef unless `name` is a known local model or hub-id shaped."""
    if ".." in name or name.startswith(("/", "~", ".")) or "\\" in name:
        raise InvalidModelRef(f"model {name!r} looks like a path; give a hub id (org/name) or a registered model name")
    if HUB_ID.match(name) or local_folder(name, roots) is not None:
        return
    if LOCAL_NAME.match(name):
        known = sorted({p.name for r in roots if r.is_dir() for p in r.iterdir() if is_model_folder(p)})
        raise InvalidModelRef(
            f"no local model named {name!r}; known: {', '.join(known) or 'none'} (or give a hub id org/name)"
        )
    raise InvalidModelRef(f"model {name!r} is neither a hub id (org/name) nor a registered model name")


def resolve(name: str, roots: list[Path]) -> str:
    """The source the engine loads: the local folder when there is one, else the hub id."""
    folder = local_folder(name, roots)
    return str(folder) if folder is not None else name


def local_context_length(name: str, roots: list[Path]) -> int | None:
    """A local Hugging Face folder's `max_position_embeddings` (None when unknown: a GGUF folder,
    a hub id, a config without it); the worker checks again once the model is loaded."""
    folder = local_folder(name, roots)
    if folder is None or not (folder / "config.json").is_file():
        return None
    try:
        value = json.loads((folder / "config.json").read_text()).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None
