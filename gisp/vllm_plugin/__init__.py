"""The exact vLLM route: an out-of-tree vLLM model for the compact checkpoints (`gisp export-hf`,
what `gisp prune` writes), each layer's attention built with its own query- and KV-head counts and
each MLP with its own width, so nothing is padded (unlike `gisp export-vllm`).

Installed with `pip install 'gisp-service[vllm]'`; vLLM finds it through the `vllm.general_plugins`
entry point (`register`), then serves a checkpoint folder with `vllm serve PATH --trust-remote-code`
(the config class comes from the folder's own configuration_gisp.py). `layout` holds the
vLLM-free part (per-layer sizes, biases, which checkpoint tensors the model has), `model` the
vLLM module, imported by vLLM only when a gisp architecture is served."""

from __future__ import annotations

ARCHITECTURES = ("GispLlamaForCausalLM", "GispMistralForCausalLM", "GispQwen2ForCausalLM")
MODEL_CLASS = "gisp.vllm_plugin.model:GispForCausalLM"


def register() -> None:
    """vLLM's general-plugin hook: register the architectures (lazily, by import path)."""
    from vllm import ModelRegistry

    for architecture in ARCHITECTURES:
        if architecture not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(architecture, MODEL_CLASS)
