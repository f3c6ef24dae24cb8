"""GGUF files as base models: converted once through transformers' loader, cached, recorded as the
file itself; the real SmolLM2-135M GGUF under ../shared."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gisp.errors import ConfigError
from gisp.gguf_input import PROVENANCE, converted_folder, gguf_file_of
from gisp.loading import load_model
from tests.conftest import shared_path

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm_gguf() -> Path:
    pytest.importorskip("gguf", reason="pip install 'gisp-service[gguf]'")
    folder = shared_path("models", "smollm2-135m-instruct-q4_1")
    return next(folder.glob("*.gguf"))


def test_a_gguf_file_or_its_folder_loads_as_a_base_model(smollm_gguf: Path) -> None:
    by_folder = load_model(str(smollm_gguf.parent))
    assert by_folder.source == str(smollm_gguf)  # the trajectory names the file the user gave
    spec = by_folder.adapter.spec
    assert (spec.num_layers, spec.num_kv_heads, spec.heads_per_group) == (30, 3, 3)
    folder = converted_folder(smollm_gguf)
    stamp = (folder / PROVENANCE).stat().st_mtime_ns
    again = load_model(str(smollm_gguf))  # the cached conversion is used, not redone
    assert (folder / PROVENANCE).stat().st_mtime_ns == stamp
    ids = by_folder.tokenizer("Once upon a time, there was a little", return_tensors="pt").input_ids
    logits = again.model(ids).logits[0, -1]
    assert by_folder.tokenizer.decode(int(logits.argmax())).strip() in {"girl", "boy"}


def test_a_folder_with_several_gguf_files_is_refused(tmp_path: Path) -> None:
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match="several GGUF files"):
        gguf_file_of(tmp_path)
    single = tmp_path / "one"
    single.mkdir()
    shutil.copy(tmp_path / "a.gguf", single / "m.gguf")
    assert gguf_file_of(single) == (single / "m.gguf").resolve()
    assert gguf_file_of(tmp_path / "a.gguf") == (tmp_path / "a.gguf").resolve()
