"""Objectives: the model-level loss whose gradients define importance. Registered by name."""

from gisp.objectives import builtin as _builtin  # noqa: F401  (registers perplexity, completion, margin)
from gisp.objectives.base import Batch, Objective, get_objective, objective_names, register_objective

__all__ = ["Batch", "Objective", "get_objective", "objective_names", "register_objective"]
