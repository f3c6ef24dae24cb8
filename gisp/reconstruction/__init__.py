"""Reconstruction: re-fit a pruned model's surviving weights to the dense model's outputs."""

from gisp.reconstruction.solve import GramAccumulator, ridge_solve

__all__ = ["GramAccumulator", "ridge_solve"]
