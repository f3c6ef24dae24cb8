"""The closed-form core of reconstruction: stream a module's inputs into float64 Gram matrices,
then solve the ridge least squares that makes the module reproduce a target.

Stable API (other stages reuse it):

- `GramAccumulator(in_features, out_features=None, device=None)`; `.add(x, y=None)` streams a
  batch (`x` [..., in], `y` [..., out]); it keeps `gram` = XᵀX [in, in], `cross` = XᵀY [in, out]
  (when targets are given), `sum_x`, `sum_y` and `count` (rows seen), all float64 on the
  inputs' device. `.solve(damp)` is `ridge_solve(gram, cross, damp)`.
- `ridge_solve(gram, cross, damp, what="", prior=None)` returns W [in, out] minimising ‖XW − Y‖² +
  damp·mean(diag G)·‖W − W0‖², i.e. W = (G + λ'I)⁻¹ (C + λ'W0) with λ' = damp·mean(diag G), in
  float64; W0 = `prior` [in, out] (default zero: plain ridge). An nn.Linear that maps X to Y takes
  `W.T` as its weight. `what` names the solve in logs and errors.

Why float64 and a relative damp: a Gram matrix of a few thousand tokens over a wide layer is
near-singular, and the damp scaled by the mean diagonal makes one λ mean the same thing for
every layer and dtype.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from gisp.errors import ReconstructionError

log = logging.getLogger("gisp")

ILL_CONDITIONED = 1e10  # (max/min Cholesky pivot)² above which a solve is logged as ill-conditioned


def ridge_solve(gram: Tensor, cross: Tensor, damp: float, what: str = "", prior: Tensor | None = None) -> Tensor:
    """W = (G + λ'I)⁻¹ (C + λ'·W0), λ' = damp·mean(diag G), in float64 on `gram`'s device.

    `prior` W0 [in, out] is what the ridge term pulls toward (zero when None): with the weights as
    cut, a growing damp goes from the refit to no refit at all instead of shrinking the weights.

    Cholesky first; when it fails (a singular or indefinite Gram with too small a damp) the
    damped system is solved by least squares, then by the pseudo-inverse. Ill-conditioning is
    logged, never fatal; a non-finite result raises ReconstructionError naming `what`.
    """
    name = what or "ridge solve"
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"{name}: the Gram matrix must be square, not {tuple(gram.shape)}")
    if cross.shape[0] != gram.shape[0]:
        raise ValueError(f"{name}: cross {tuple(cross.shape)} does not match Gram {tuple(gram.shape)}")
    if damp < 0:
        raise ValueError(f"{name}: damp must be >= 0, not {damp}")
    if prior is not None and tuple(prior.shape) != tuple(cross.shape):
        raise ValueError(f"{name}: prior {tuple(prior.shape)} does not match cross {tuple(cross.shape)}")
    g = gram.to(torch.float64)
    c = cross.to(torch.float64)
    if not (torch.isfinite(g).all() and torch.isfinite(c).all()):
        raise ReconstructionError(f"{name}: the accumulated statistics are not finite", field="reconstruct")
    n = g.shape[0]
    scale = float(torch.diagonal(g).mean()) if n else 0.0
    ridge = damp * (scale if scale > 0 else 1.0)
    a = g + ridge * torch.eye(n, dtype=g.dtype, device=g.device)
    if prior is not None and ridge > 0:
        c = c + ridge * prior.to(device=c.device, dtype=torch.float64)
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        pivots = torch.diagonal(factor)
        condition = float((pivots.max() / pivots.min().clamp_min(1e-300)) ** 2) if n else 1.0
        if condition > ILL_CONDITIONED:
            log.warning("%s: ill-conditioned Gram (condition ~%.1e); damp %g", name, condition, damp)
        w = torch.cholesky_solve(c, factor)
    else:
        log.warning("%s: Gram not positive definite with damp %g; solving by least squares", name, damp)
        w = _fallback(a, c)
    if not torch.isfinite(w).all():
        raise ReconstructionError(f"{name}: the solution is not finite (damp {damp})", field="reconstruct")
    return w


def _fallback(a: Tensor, c: Tensor) -> Tensor:
    """Least squares (rank-revealing on CPU), then the pseudo-inverse if that is not finite."""
    driver = "gelsd" if a.device.type == "cpu" else None
    w = torch.linalg.lstsq(a, c, driver=driver).solution
    if torch.isfinite(w).all():
        return w
    return torch.linalg.pinv(a, hermitian=True) @ c


class GramAccumulator:
    """XᵀX (and XᵀY) of a module's inputs, streamed batch by batch in float64.

    Memory is one [in, in] and one [in, out] float64 matrix, whatever the number of tokens.
    """

    def __init__(self, in_features: int, out_features: int | None = None, device: torch.device | str | None = None):
        self.in_features, self.out_features = in_features, out_features
        self.device = torch.device(device) if device is not None else None
        self.count = 0
        self.gram: Tensor | None = None
        self.cross: Tensor | None = None
        self.sum_x: Tensor | None = None
        self.sum_y: Tensor | None = None

    def _zeros(self, *shape: int, device: torch.device) -> Tensor:
        return torch.zeros(*shape, dtype=torch.float64, device=device)

    def add(self, x: Tensor, y: Tensor | None = None) -> None:
        """Add the rows of `x` [..., in] (and their targets `y` [..., out])."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"inputs have width {x.shape[-1]}, expected {self.in_features}")
        device = self.device or x.device
        rows = x.reshape(-1, self.in_features).to(device=device, dtype=torch.float64)
        if self.gram is None:
            self.gram = self._zeros(self.in_features, self.in_features, device=device)
            self.sum_x = self._zeros(self.in_features, device=device)
        self.gram.addmm_(rows.T, rows)
        self.sum_x += rows.sum(0)  # type: ignore[operator]
        if y is not None:
            width = y.shape[-1]
            if self.out_features is None:
                self.out_features = width
            if width != self.out_features:
                raise ValueError(f"targets have width {width}, expected {self.out_features}")
            targets = y.reshape(-1, width).to(device=device, dtype=torch.float64)
            if targets.shape[0] != rows.shape[0]:
                raise ValueError(f"{rows.shape[0]} input rows but {targets.shape[0]} target rows")
            if self.cross is None:
                self.cross = self._zeros(self.in_features, width, device=device)
                self.sum_y = self._zeros(width, device=device)
            self.cross.addmm_(rows.T, targets)
            self.sum_y += targets.sum(0)  # type: ignore[operator]
        self.count += rows.shape[0]

    @property
    def mean_x(self) -> Tensor:
        if self.sum_x is None or self.count == 0:
            raise ValueError("no inputs were added")
        return self.sum_x / self.count

    def solve(self, damp: float, what: str = "") -> Tensor:
        """The ridge solution W [in, out] of the streamed inputs onto the streamed targets."""
        if self.gram is None or self.cross is None:
            raise ValueError(f"{what or 'ridge solve'}: no inputs and targets were added")
        return ridge_solve(self.gram, self.cross, damp, what=what)
