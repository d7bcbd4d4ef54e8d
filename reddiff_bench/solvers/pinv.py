"""The trivial baseline: the operator's initial estimate (``A_pinv y`` for linear operators), or
with ``delta > 0`` regularised least squares, ``argmin ||y - A x||^2 + delta ||x||^2 =
A^T (A A^T + delta I)^-1 y`` (through the SVD). Under a Gaussian prior ``N(0, s^2 I)`` and noise
``sigma_y`` it is the exact posterior mean at ``delta = sigma_y^2 / s^2``: a setting whose optimum
is known in closed form (the tuner's test)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_number
from ..operators import Operator, SVDOperator
from ..priors import DiffusionPrior
from .base import Callback, SolverResult


class PseudoInverse:
    def __init__(self, delta: float = 0.0):
        check_number("solver.delta", delta, minimum=0.0)
        self.delta = float(delta)

    def check(self, operator: Operator) -> None:
        if self.delta > 0 and not isinstance(operator, SVDOperator):
            raise ValueError(f"solver.delta > 0 needs an operator with an SVD ({type(operator).__name__} has none); "
                             f"set solver.delta=0 (the pseudo-inverse)")

    def solve(self, prior: DiffusionPrior, operator: Operator, y: Tensor, *, sigma_y: float,
              generators: list[torch.Generator], callback: Callback | None = None) -> SolverResult:
        with torch.no_grad():
            if self.delta > 0:
                return SolverResult(x0=operator.adjoint(operator.gram_solve(y, 1.0, self.delta)))
            return SolverResult(x0=operator.init_estimate(y))
