"""Export: the folder loads with our loader and with plain transformers (no gisp importable),
its logits equal the masked base model's, and generate() with a KV cache works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gisp.config import PruneSettings
from gisp.export import export_checkpoint, load_pruned
from gisp.masking import structure_masks, unit_masks
from gisp.pruner import new_trajectory, prune
from gisp.structure import Structure
from gisp.trajectory import Trajectory
from tests.engine.tiny import FAMILIES, VOCAB, random_examples, tiny_model

# Runs in a fresh interpreter where `import gisp` fails, as on a machine without this package.
LOAD_WITHOUT_GISP = """
import sys, json, torch
sys.modules["gisp"] = None
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
ids = torch.tensor(json.loads(sys.argv[2]))
with torch.no_grad():
    print(json.dumps(model(input_ids=ids).logits.tolist()))
"""


def load_without_gisp(path: Path, ids: torch.Tensor) -> torch.Tensor:
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_GISP, str(path), json.dumps(ids.tolist())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))


def pruned_tiny(family: str, target: float = 0.5) -> Trajectory:
    loaded = tiny_model(family)
    settings = PruneSettings(targets=[target], steps=3, batch_size=4)
    return prune(loaded, random_examples(8, 16), settings, new_trajectory(loaded, settings, "0" * 64))


def masked_logits(family: str, kept: Structure, ids: torch.Tensor) -> torch.Tensor:
    base = tiny_model(family)
    full = Structure.full(base.adapter.spec)
    with torch.no_grad(), unit_masks(base.model, base.adapter, structure_masks(base.adapter, full, kept)):
        return base.model(input_ids=ids).logits


@pytest.mark.parametrize("family", list(FAMILIES))
def test_export_round_trip(family: str, tmp_path: Path) -> None:
    trajectory = pruned_tiny(family)
    record = trajectory.checkpoints[0]
    record.structure.attn[0] = []  # a layer with no attention left must survive export too
    out = export_checkpoint(trajectory, 0.5, tmp_path / "ckpt", base=tiny_model(family))
    config = json.loads((out / "config.json").read_text())
    assert config["layer_num_key_value_heads"] == [len(x) for x in record.structure.attn]
    assert config["layer_intermediate_sizes"] == [len(x) for x in record.structure.mlp]
    assert {"model.safetensors", "modeling_gisp.py", "configuration_gisp.py", "README.md", "tokenizer.json"} <= {
        p.name for p in out.iterdir()
    }
    ids = torch.randint(4, VOCAB, (2, 10))
    reference = masked_logits(family, record.structure, ids)
    model = load_pruned(out)
    with torch.no_grad():
        assert (model(input_ids=ids).logits - reference).abs().max() <= 1e-4
    assert (load_without_gisp(out, ids) - reference).abs().max() <= 1e-4


@pytest.mark.parametrize("family", ["llama-gqa", "mistral"])
def test_generate_with_cache_matches_without(family: str, tmp_path: Path) -> None:
    trajectory = pruned_tiny(family, target=0.6)
    trajectory.checkpoints[0].structure.attn[1] = []
    out = export_checkpoint(trajectory, 0.6, tmp_path / "ckpt", base=tiny_model(family))
    model = load_pruned(out)
    prompt = torch.tensor([[1, 7, 9, 11]])
    cached = model.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=True)
    uncached = model.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=False)
    assert cached.shape == (1, 12)
    assert torch.equal(cached, uncached)


def test_export_replaces_atomically(tmp_path: Path) -> None:
    trajectory = pruned_tiny("llama-gqa")
    target = tmp_path / "ckpt"
    export_checkpoint(trajectory, 0.5, target, base=tiny_model("llama-gqa"))
    export_checkpoint(trajectory, 0.5, target, base=tiny_model("llama-gqa"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left
    assert (target / "model.safetensors").is_file()
