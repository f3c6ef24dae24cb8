"""Reconstruction: re-fit a pruned model's surviving weights to the dense model's outputs."""

from gisp.reconstruction import builtin as _builtin  # noqa: F401  (registers the built-in variants)
from gisp.reconstruction.base import (
    ProjectionStats,
    Reconstruction,
    Refit,
    get_reconstruction,
    reconstruction_names,
    register_reconstruction,
)
from gisp.reconstruction.solve import GramAccumulator, ridge_solve

__all__ = [
    "GramAccumulator",
    "ProjectionStats",
    "Reconstruction",
    "Refit",
    "get_reconstruction",
    "reconstruction_names",
    "register_reconstruction",
    "ridge_solve",
]
