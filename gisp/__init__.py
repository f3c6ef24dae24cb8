"""GISP: Global Iterative Structured Pruning of Llama-family language models.

The engine knows torch and transformers only; the service drives it through `run`, the
observer hooks of `PruneObserver`, `Trajectory` and the export functions.
"""

from gisp.config import PruneSettings
from gisp.errors import (
    ConfigError,
    DataFormatError,
    GispError,
    ModelNotFoundError,
    PruningStopped,
    UnsupportedArchitectureError,
)
from gisp.export import export_all, export_checkpoint, load_pruned, materialize
from gisp.loading import LoadedModel, load_model
from gisp.pruner import PruneObserver, StepReport, new_trajectory, prune
from gisp.run import prepare, run
from gisp.structure import ArchSpec, Structure, Unit
from gisp.trajectory import CheckpointRecord, Trajectory
from gisp.tyr.store import discard_state as discard_resume_state

__version__ = "0.1.0"

__all__ = [
    "ArchSpec",
    "CheckpointRecord",
    "ConfigError",
    "DataFormatError",
    "GispError",
    "LoadedModel",
    "ModelNotFoundError",
    "PruneObserver",
    "PruneSettings",
    "PruningStopped",
    "StepReport",
    "Structure",
    "Trajectory",
    "Unit",
    "UnsupportedArchitectureError",
    "discard_resume_state",
    "export_all",
    "export_checkpoint",
    "load_model",
    "load_pruned",
    "materialize",
    "new_trajectory",
    "prepare",
    "prune",
    "run",
]
