"""Pruning methods: how a step orders the candidate units for removal. Registered by name."""

from gisp.methods import gisp as _gisp  # noqa: F401
from gisp.methods import magnitude as _magnitude  # noqa: F401
from gisp.methods import random_order as _random_order  # noqa: F401
from gisp.methods import tyr as _tyr  # noqa: F401
from gisp.methods import wanda_sp as _wanda_sp  # noqa: F401
from gisp.methods.base import MethodContext, PruningMethod, get_method, method_names, register_method

__all__ = ["MethodContext", "PruningMethod", "get_method", "method_names", "register_method"]
