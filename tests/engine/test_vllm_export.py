"""The padded DeciLM (nemotron-nas) export for stock vLLM. vLLM itself cannot be installed here (it
pins another torch), so the export is checked in transformers: the folder's own DeciLM code, which
follows vLLM's DeciLMForCausalLM layout, gives the compact checkpoint's logits; and the config has
what vLLM reads (n_heads_in_group dividing the query-head count, exact widths without ffn_mult)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from gisp.export import load_pruned
from gisp.exporters import export
from gisp.exporters.vllm import smallest_divisor_at_least
from tests.engine.test_gguf_export import CASES, pruned_checkpoint

pytestmark = pytest.mark.integration

# 8 query heads in 4 KV groups: a layer keeping 3 groups needs a dummy KV head (3 does not divide 8)
EIGHT_HEADS = dict(num_attention_heads=8, num_key_value_heads=4)


def padded_and_compact(tmp_path: Path, family: str, case: str):
    folder = pruned_checkpoint(tmp_path / "ckpt", family=family, case=case, **EIGHT_HEADS)
    summary = export(folder, tmp_path / "vllm", "vllm")
    return folder, tmp_path / "vllm", summary


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("family", ["llama-gqa", "llama-bias", "qwen2"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_padded_export_computes_what_the_compact_checkpoint_computes(family: str, case: str, tmp_path) -> None:
    compact, padded, summary = padded_and_compact(tmp_path, family, case)
    ids = torch.randint(3, 500, (2, 12))
    reference = logits(load_pruned(compact), ids)
    model = AutoModelForCausalLM.from_pretrained(padded, trust_remote_code=True).eval()
    assert (logits(model, ids) - reference).abs().max() < 1e-5
    prompt = ids[:1, :5]
    cached = model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True)
    assert torch.equal(cached, model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False))


def test_the_config_is_the_layout_vllm_reads(tmp_path: Path) -> None:
    compact, padded, summary = padded_and_compact(tmp_path, "llama-gqa", "both-in-one-layer")
    kept = json.loads((compact / "config.json").read_text())
    config = json.loads((padded / "config.json").read_text())
    assert config["architectures"] == ["DeciLMForCausalLM"] and config["model_type"] == "nemotron-nas"
    heads = config["num_attention_heads"]
    for index, block in enumerate(config["block_configs"]):
        attention, ffn = block["attention"], block["ffn"]
        groups, width = kept["layer_num_key_value_heads"][index], kept["layer_intermediate_sizes"][index]
        assert "ffn_mult" not in ffn  # vLLM would round a width derived from it
        assert ffn["no_op"] == (width == 0) and ffn.get("intermediate_size") == (width or None)
        if attention["no_op"]:
            assert groups == 0 and index > 0
            continue
        kv = heads // attention["n_heads_in_group"]
        assert heads % attention["n_heads_in_group"] == 0 and kv == smallest_divisor_at_least(heads, groups)
    weights = json.loads((padded / "model.safetensors.index.json").read_text())["weight_map"]
    assert "model.layers.2.input_layernorm.weight" not in weights  # a no-op layer has no weights at all
    assert "model.layers.2.mlp.gate_proj.weight" not in weights
    assert summary["kv_heads"] == [
        0 if b["attention"]["no_op"] else heads // b["attention"]["n_heads_in_group"] for b in config["block_configs"]
    ]


def test_a_layer_keeping_three_of_four_groups_gets_one_dummy_kv_head(tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "ckpt", case="dense", **EIGHT_HEADS)
    config = json.loads((folder / "config.json").read_text())
    assert config["layer_num_key_value_heads"][0] == 4
    # drop group 1 of layer 0 by editing the compact folder: the rows of its query heads and KV head
    from safetensors.torch import save_file

    with safe_open(folder / "model.safetensors", "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    hd, q_per_group = 4, 8
    keep_q = [r for r in range(32) if not q_per_group <= r < 2 * q_per_group]
    keep_kv = [r for r in range(16) if not hd <= r < 2 * hd]
    p = "model.layers.0.self_attn."
    tensors[p + "q_proj.weight"] = tensors[p + "q_proj.weight"][keep_q]
    tensors[p + "k_proj.weight"] = tensors[p + "k_proj.weight"][keep_kv]
    tensors[p + "v_proj.weight"] = tensors[p + "v_proj.weight"][keep_kv]
    tensors[p + "o_proj.weight"] = tensors[p + "o_proj.weight"][:, keep_q]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config["layer_num_key_value_heads"][0] = 3
    (folder / "config.json").write_text(json.dumps(config))
    summary = export(folder, tmp_path / "vllm", "vllm")
    assert summary["kv_heads"][0] == 4 and summary["query_heads"][0] == 8
    ids = torch.randint(3, 500, (1, 10))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "vllm", trust_remote_code=True).eval()
    assert (logits(model, ids) - logits(load_pruned(folder), ids)).abs().max() < 1e-5
