"""Architecture adapters, registered by the transformers `model_type` they handle."""

from gisp.adapters import llama as _llama  # noqa: F401  (registers the Llama family)
from gisp.adapters.base import ArchitectureAdapter, WeightGroup, adapter_for, register_adapter, supported_model_types

__all__ = ["ArchitectureAdapter", "WeightGroup", "adapter_for", "register_adapter", "supported_model_types"]
