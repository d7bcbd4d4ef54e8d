"""DAPS: decoupled annealing posterior sampling (Zhang et al., CVPR 2025).

An annealing over noise levels sigma_0 > sigma_1 > ... > 0 (VE scale, ``x_t = x0 + sigma z``),
decoupled from the diffusion's own steps. At each level (paper Alg. 1):

1. reverse diffusion: ``x0_hat``, the probability-flow ODE (DDIM, eta 0) from ``x_t`` down to
   clean in ``ode_steps`` steps (one network call each, no gradient through the network);
2. Langevin dynamics on ``x0`` for ``p(x0 | x_t, y) ~ N(x0; x0_hat, sigma^2 I) p(y | x0)`` with the
   measurement model ``N(y; A(x0), tau^2 I)``: ``langevin_steps`` steps
   ``x0 <- x0 - lr (grad ||A(x0) - y||^2 / (2 tau^2) + (x0 - x0_hat) / sigma^2) + sqrt(2 lr) z``, the
   step decaying linearly from ``lr`` to ``lr * lr_min_ratio`` over the annealing. Any
   differentiable operator, nonlinear included (gradients of the operator only);
3. forward: ``x_t' = x0 + sigma' z`` at the next level; after the last level, ``x0`` is the sample.

The noise levels follow EDM's schedule (``sigma_max^(1/7)`` to ``sigma_min^(1/7)`` linearly, to the
7th power), each rounded to the model's nearest discrete timestep (its own sigma is used), as are
the ODE's levels (from the current one to ``ode_sigma_min``). Defaults (InverseBench
``configs/algorithm/daps.yaml``, the official DAPS-1K setting): 200 levels from 100 to 0.1, 5
ODE steps to 0.01 (1000 network calls in all), 100 Langevin steps, lr 1e-4, lr_min_ratio 0.01,
tau 0.01 (the official codes' value whatever the noise; ``tau: null`` takes the task's sigma_y).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_number
from ..diffusion import VPSchedule, randn_per_sample
from ..operators import Operator
from ..priors import DiffusionPrior
from .base import Callback, SolverResult
from .sampling import abar, ddim_step


def edm_sigmas(sigma_max: float, sigma_min: float, n: int, rho: float = 7.0) -> list[float]:
    """``n`` levels from ``sigma_max`` to ``sigma_min``, linear in ``sigma^(1/rho)`` (EDM)."""
    if n == 1:
        return [sigma_max]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)]


def nearest_timesteps(schedule: VPSchedule, sigmas: list[float]) -> list[int]:
    """The timesteps whose VE noise level ``sqrt((1 - abar) / abar)`` is nearest each of ``sigmas``
    (in log scale), repeats removed (a descending list)."""
    levels = ((1 - schedule.abar) / schedule.abar).sqrt().log()
    out: list[int] = []
    for sigma in sigmas:
        t = int((levels - torch.tensor(sigma, dtype=levels.dtype).log()).abs().argmin())
        if not out or t < out[-1]:
            out.append(t)
    return out


class DAPS:
    def __init__(self, annealing_steps: int = 200, sigma_max: float = 100.0, sigma_min: float = 0.1,
                 ode_steps: int = 5, ode_sigma_min: float = 0.01, langevin_steps: int = 100, lr: float = 1e-4,
                 lr_min_ratio: float = 0.01, tau: float | None = 0.01):
        for key, value, limits in (("annealing_steps", annealing_steps, dict(minimum=1, integer=True)),
                                   ("sigma_max", sigma_max, dict(above=0)), ("sigma_min", sigma_min, dict(above=0)),
                                   ("ode_steps", ode_steps, dict(minimum=1, integer=True)),
                                   ("ode_sigma_min", ode_sigma_min, dict(above=0)),
                                   ("langevin_steps", langevin_steps, dict(minimum=0, integer=True)),
                                   ("lr", lr, dict(above=0)), ("lr_min_ratio", lr_min_ratio, dict(above=0))):
            check_number(f"solver.{key}", value, **limits)
        if tau is not None:
            check_number("solver.tau", tau, above=0)
        if sigma_min >= sigma_max:
            raise ValueError(f"solver.sigma_min ({sigma_min}) must be below solver.sigma_max ({sigma_max})")
        self.annealing_steps, self.sigma_max, self.sigma_min = int(annealing_steps), float(sigma_max), float(sigma_min)
        self.ode_steps, self.ode_sigma_min = int(ode_steps), float(ode_sigma_min)
        self.langevin_steps, self.lr, self.lr_min_ratio = int(langevin_steps), float(lr), float(lr_min_ratio)
        self.tau = None if tau is None else float(tau)

    def _reverse(self, prior: DiffusionPrior, x: Tensor, t: int) -> Tensor:
        """``x0_hat``: DDIM (eta 0) from ``x`` at ``t`` to clean, on the ODE's levels."""
        sigma_t = float(((1 - prior.schedule.abar[t]) / prior.schedule.abar[t]).sqrt())
        ts = [s for s in nearest_timesteps(prior.schedule, edm_sigmas(sigma_t, self.ode_sigma_min, self.ode_steps))
              if s <= t]
        ts = ts[: self.ode_steps] if ts and ts[0] == t else [t] + ts[: self.ode_steps - 1]
        for u, s in zip(ts, ts[1:] + [-1]):
            pred = prior.predict(x, u)
            x = ddim_step(pred.x0, pred.eps, abar(prior.schedule, u, x), abar(prior.schedule, s, x), 0.0, None)
        return x

    def solve(self, prior: DiffusionPrior, operator: Operator, y: Tensor, *, sigma_y: float,
              generators: list[torch.Generator], callback: Callback | None = None) -> SolverResult:
        shape = tuple(prior.image_shape)
        levels = nearest_timesteps(prior.schedule, edm_sigmas(self.sigma_max, self.sigma_min, self.annealing_steps))
        tau = self.tau if self.tau is not None else max(sigma_y, 1e-3)
        support = operator.y_support(y)
        x = randn_per_sample(generators, shape, y) * (1 - abar(prior.schedule, levels[0], y)).sqrt()
        for i, t in enumerate(levels):
            sigma2 = (1 - abar(prior.schedule, t, x)) / abar(prior.schedule, t, x)
            with torch.no_grad():
                x0_hat = self._reverse(prior, x, t)
            lr = self.lr * (1 + i / len(levels) * (self.lr_min_ratio - 1))
            x0 = x0_hat.clone()
            for _ in range(self.langevin_steps):
                x0.requires_grad_(True)
                residual = operator(x0) - y
                if support is not None:
                    residual = residual * support
                (grad,) = torch.autograd.grad(residual.pow(2).sum() / (2 * tau**2), x0)
                with torch.no_grad():
                    x0 = x0 - lr * (grad + (x0 - x0_hat) / sigma2) + (2 * lr) ** 0.5 * randn_per_sample(
                        generators, shape, x0)
            x0 = x0.detach()
            if i + 1 < len(levels):
                a_next = abar(prior.schedule, levels[i + 1], x0)
                x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * randn_per_sample(generators, shape, x0)
            else:
                x = x0
            if callback is not None:
                callback(i, {"t": t, "x": x, "total": len(levels)})
        return SolverResult(x0=x)
