"""The trivial baseline: the operator's initial estimate (``A_pinv y`` for linear operators)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..operators import Operator
from ..priors import DiffusionPrior
from .base import Callback, SolverResult


class PseudoInverse:
    def solve(self, prior: DiffusionPrior, operator: Operator, y: Tensor, *, sigma_y: float,
              generators: list[torch.Generator], callback: Callback | None = None) -> SolverResult:
        with torch.no_grad():
            return SolverResult(x0=operator.init_estimate(y))
