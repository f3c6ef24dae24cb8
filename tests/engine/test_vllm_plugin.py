"""The exact vLLM route (gisp.vllm_plugin). vLLM is not installable here (it pins another torch), so
what runs is the vLLM-free part, against real exported checkpoints: per-layer head counts and
widths, biases, which checkpoint tensors the model takes, and the entry point vLLM looks up. The
test that builds the vLLM model skips without vLLM."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from safetensors import safe_open

from gisp.vllm_plugin import ARCHITECTURES, MODEL_CLASS
from gisp.vllm_plugin.layout import layer_specs, projection_biases, weight_is_used
from tests.engine.test_gguf_export import pruned_checkpoint

pytestmark = pytest.mark.integration


def test_each_layer_gets_its_own_query_and_kv_head_counts_and_width(tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "c", case="both-in-one-layer", num_attention_heads=8, num_key_value_heads=4)
    config = json.loads((folder / "config.json").read_text())
    specs = layer_specs(config)
    assert [s.num_kv_heads for s in specs] == config["layer_num_key_value_heads"]
    assert [s.num_heads for s in specs] == [2 * g for g in config["layer_num_key_value_heads"]]
    assert [s.intermediate_size for s in specs] == config["layer_intermediate_sizes"]
    assert not specs[2].has_attention and not specs[2].has_mlp
    assert config["architectures"][0] in ARCHITECTURES


def test_the_model_takes_exactly_the_tensors_its_layers_have(tmp_path: Path) -> None:
    folder = pruned_checkpoint(tmp_path / "c", case="no-mlp-channel")
    specs = layer_specs(json.loads((folder / "config.json").read_text()))
    with safe_open(folder / "model.safetensors", "pt") as f:
        used = {k for k in f.keys() if weight_is_used(k, specs, _numel(f, k))}  # noqa: SIM118
        dropped = set(f.keys()) - used  # noqa: SIM118
    assert dropped == {
        "model.layers.1.post_attention_layernorm.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
    }
    assert "model.layers.1.self_attn.q_proj.weight" in used and "lm_head.weight" in used


def _numel(handle, name: str) -> int:
    count = 1
    for size in handle.get_slice(name).get_shape():
        count *= size
    return count


def test_biases_follow_the_family_and_output_only_biases_are_refused() -> None:
    llama = {"model_type": "gisp_llama", "attention_bias": True, "mlp_bias": True}
    assert projection_biases(llama).__dict__ == {"qkv": True, "o": True, "mlp": True}
    assert projection_biases({"model_type": "gisp_qwen2"}).__dict__ == {"qkv": True, "o": False, "mlp": False}
    with pytest.raises(ValueError, match="export-vllm"):
        projection_biases({"model_type": "gisp_llama", "output_proj_bias": True})


def test_vllm_finds_the_plugin_through_its_entry_point() -> None:
    plugins = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert plugins.get("gisp") == "gisp.vllm_plugin:register"
    module, _, name = MODEL_CLASS.partition(":")
    assert module == "gisp.vllm_plugin.model" and name == "GispForCausalLM"


def test_the_vllm_api_the_model_relies_on() -> None:
    """Where vLLM is installed: the plugin's module imports and vLLM's DeciLM model still takes a
    decoder-layer type (the one hook the plugin uses)."""
    pytest.importorskip("vllm", reason="vLLM is not installed (it needs its own torch build; see docs/export.md)")
    import inspect

    from vllm.model_executor.models.nemotron_nas import DeciModel

    from gisp.vllm_plugin.model import GispForCausalLM

    assert "layer_type" in inspect.signature(DeciModel.__init__).parameters
    assert GispForCausalLM._init_model is not None
