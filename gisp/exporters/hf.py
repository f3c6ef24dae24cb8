"""The `hf` exporter: the Hugging Face folder (config with per-layer widths, safetensors, tokenizer,
remote model code) that every other format is converted from. Given a folder, it copies it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from gisp.exporters.base import Exporter, register_exporter


@register_exporter
class HfFolderExporter(Exporter):
    name = "hf"
    suffix = ""
    help = "a Hugging Face folder (load with trust_remote_code=True)"

    def write(self, folder: Path, out: Path, **options: Any) -> dict[str, Any]:
        from gisp.export import atomic_folder

        out = Path(out)
        if out.resolve() != Path(folder).resolve():
            with atomic_folder(out) as tmp:
                shutil.copytree(folder, tmp, dirs_exist_ok=True)
        return {"path": str(out), "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}
