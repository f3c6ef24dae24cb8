"""Importance estimators: raw per-unit scores of the current model. Registered by name."""

from gisp.importance import fisher as _fisher  # noqa: F401
from gisp.importance import taylor as _taylor  # noqa: F401
from gisp.importance.base import (
    ImportanceEstimator,
    ScoringContext,
    UnitScores,
    estimator_names,
    get_estimator,
    register_estimator,
)

__all__ = [
    "ImportanceEstimator",
    "ScoringContext",
    "UnitScores",
    "estimator_names",
    "get_estimator",
    "register_estimator",
]
