"""Deployment formats, one registered exporter each: `hf` (the Hugging Face folder), `gguf`
(llama.cpp) and `vllm` (the DeciLM layout vLLM reads). Third parties add theirs through the
`gisp.exporters` entry-point group."""

from gisp.exporters import hf as _hf  # noqa: F401  (registers the built-in formats)
from gisp.exporters import llamacpp as _llamacpp  # noqa: F401
from gisp.exporters import vllm as _vllm  # noqa: F401
from gisp.exporters.base import EXPORTERS, Exporter, ExportError, exporter_names, get_exporter, register_exporter
from gisp.exporters.source import checkpoint_folder

__all__ = [
    "EXPORTERS",
    "ExportError",
    "Exporter",
    "checkpoint_folder",
    "export",
    "exporter_names",
    "get_exporter",
    "register_exporter",
]


def export(source, out, format: str, target: float | None = None, **options) -> dict:
    """Write checkpoint `source` (a folder, or a trajectory with `target`) in `format` at `out`."""
    exporter = get_exporter(format)
    with checkpoint_folder(source, target) as folder:
        return exporter.write(folder, out, **options)
