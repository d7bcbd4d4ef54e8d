"""Unconditional DDIM sampling (Song, Meng, Ermon, ICLR 2021): ignores ``y``; the prior-only
reference against which conditional solvers are judged."""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_number
from ..diffusion import randn_per_sample
from ..operators import Operator
from ..priors import DiffusionPrior
from .base import Callback, SolverResult
from .sampling import abar, ddim_step, timestep_pairs


class DDIM:
    def __init__(self, steps: int = 100, eta: float = 0.0):
        check_number("solver.steps", steps, minimum=1, integer=True)
        check_number("solver.eta", eta, minimum=0, maximum=1)
        self.steps, self.eta = int(steps), float(eta)

    def solve(self, prior: DiffusionPrior, operator: Operator, y: Tensor, *, sigma_y: float,
              generators: list[torch.Generator], callback: Callback | None = None) -> SolverResult:
        shape = tuple(prior.image_shape)
        x = randn_per_sample(generators, shape, y)
        pairs = timestep_pairs(prior.schedule, self.steps)
        with torch.no_grad():
            for step, (t, s) in enumerate(pairs):
                pred = prior.predict(x, t)
                noise = randn_per_sample(generators, shape, x) if self.eta > 0 and s >= 0 else None
                x = ddim_step(pred.x0, pred.eps, abar(prior.schedule, t, x), abar(prior.schedule, s, x), self.eta,
                              noise)
                if callback is not None:
                    callback(step, {"t": t, "x": x.detach(), "total": len(pairs)})
        return SolverResult(x0=x)
