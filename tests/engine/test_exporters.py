"""The exporter registry: every format is a registered class with its own `gisp export-<name>`
command; an unknown one is refused naming the field; `hf` copies a checkpoint folder atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from gisp.cli import build_parser
from gisp.errors import ConfigError
from gisp.exporters import exporter_names, get_exporter
from tests.engine.test_gguf_export import pruned_checkpoint

pytestmark = pytest.mark.integration


def test_the_built_in_formats_are_registered_and_each_has_a_command() -> None:
    assert {"hf", "gguf", "vllm"} <= set(exporter_names())
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"export-hf", "export-gguf", "export-vllm"} <= set(commands)
    with pytest.raises(ConfigError, match="unknown exporter 'onnx'") as caught:
        get_exporter("onnx")
    assert caught.value.field == "format"


def test_hf_copies_a_checkpoint_folder(tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "ckpt", case="no-kv-group")
    summary = get_exporter("hf").write(folder, tmp_path / "copy")
    copied = {p.name: p.read_bytes() for p in (tmp_path / "copy").iterdir()}
    assert copied == {p.name: p.read_bytes() for p in folder.iterdir()}
    assert summary["bytes"] == sum(len(b) for b in copied.values())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
