"""DiffPIR: denoising diffusion models for plug-and-play image restoration (Zhu et al., CVPR 2023).

Half-quadratic splitting with the diffusion denoiser. At each step (paper Alg. 1):

1. denoise: ``x0 = x0_hat(x_t)`` (one network call, no gradient through it);
2. data step: ``x0' = argmin_x ||y - A x||^2 + rho_t ||x - x0||^2`` with
   ``rho_t = lam sigma_n^2 / sigma_t^2`` and ``sigma_t = sqrt(1 - abar_t) / sqrt(abar_t)``: in closed
   form through the SVD, ``(V^T x0')_i = (s_i (U^T y)_i + rho_t (V^T x0)_i) / (s_i^2 + rho_t)`` on measured
   coordinates (the pseudo-inverse's value when rho_t = 0, i.e. noiseless), unchanged elsewhere;
   for operators without an SVD, ``grad_steps`` gradient steps on the same objective from ``x0``
   with step ``1 / (2 rho_t)`` (the first is the linearised proximal step
   ``x0 - A^T(A x0 - y) / rho_t``);
3. ``eps' = (x_t - sqrt(abar_t) x0') / sqrt(1 - abar_t)`` and
   ``x_s = sqrt(abar_s) x0' + sqrt(1 - abar_s) (sqrt(1 - zeta) eps' + sqrt(zeta) z)``.

``sigma_n``: the noise level the data step assumes (null: the task's sigma_y; the nonlinear data
step needs it > 0: a noiseless task without an SVD is refused, naming solver.sigma_n).
Defaults: 100 steps (the paper's NFE = 100), lam 8.0
and zeta 1.0 (InverseBench ``configs/algorithm/diffpir.yaml``, ``lamb``, ``xi``).

On a Gaussian prior (d = 4, two measurements, sigma_y = 0.1; ``tests/test_peer_solvers.py``) lam
sets the bias of the sample mean: 0.02 posterior stds at lam 1, 0.40 at the default 8, 0.77 at 32;
zeta 1 (all fresh noise) inflates the covariance by ~55%, zeta 0.3 by ~13%.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_number
from ..diffusion import randn_per_sample
from ..operators import Operator, SVDOperator
from ..priors import DiffusionPrior
from .base import Callback, SolverResult
from .sampling import abar, timestep_pairs


class DiffPIR:
    def __init__(self, steps: int = 100, lam: float = 8.0, zeta: float = 1.0, sigma_n: float | None = None,
                 grad_steps: int = 1):
        check_number("solver.steps", steps, minimum=1, integer=True)
        check_number("solver.lam", lam, minimum=0)
        check_number("solver.zeta", zeta, minimum=0, maximum=1)
        check_number("solver.grad_steps", grad_steps, minimum=1, integer=True)
        if sigma_n is not None:
            check_number("solver.sigma_n", sigma_n, minimum=0)
        self.steps, self.lam, self.zeta, self.grad_steps = int(steps), float(lam), float(zeta), int(grad_steps)
        self.sigma_n = None if sigma_n is None else float(sigma_n)

    def noise_level(self, sigma_y: float) -> float:
        return sigma_y if self.sigma_n is None else self.sigma_n

    def check(self, operator: Operator, sigma_y: float) -> None:
        """Refuse, before any work, what the data step cannot do: a gradient step (an operator
        without an SVD) has the step ``1 / rho``, infinite when the assumed noise level is 0."""
        if not isinstance(operator, SVDOperator) and self.noise_level(sigma_y) <= 0:
            raise ValueError(f"DiffPIR's data step for {type(operator).__name__} (no SVD) is a gradient step of size "
                             f"1 / rho with rho = lam sigma_n^2 abar / (1 - abar): with a noiseless task (sigma_y = 0) "
                             f"it is infinite. Set solver.sigma_n to the noise level to assume (e.g. 0.01)")

    def data_step(self, operator: Operator, y: Tensor, x0: Tensor, rho: Tensor) -> Tensor:
        """``argmin_x ||y - A x||^2 + rho ||x - x0||^2``: exact through the SVD, else gradient steps."""
        if isinstance(operator, SVDOperator):
            zy = operator.ut(y)
            s, nonzero = operator.spectrum(zy)
            s = torch.where(nonzero, s, 0)
            z0 = operator.vt(x0)
            selected = operator.select(z0)
            denom = s**2 + rho
            solved = torch.where(denom > 0, (s * zy + rho * selected) / torch.where(denom > 0, denom, 1), selected)
            return operator.v(z0 - operator.embed(selected) + operator.embed(solved))
        support = operator.y_support(y)
        x = x0.detach().clone()
        for _ in range(self.grad_steps):  # x <- x - (A^T(Ax - y) + rho (x - x0)) / rho
            x.requires_grad_(True)
            with torch.enable_grad():
                residual = operator(x) - y
                if support is not None:
                    residual = residual * support
                (grad,) = torch.autograd.grad(0.5 * residual.pow(2).sum(), x)
            x = (x0 - grad / rho).detach()
        return x

    def solve(self, prior: DiffusionPrior, operator: Operator, y: Tensor, *, sigma_y: float,
              generators: list[torch.Generator], callback: Callback | None = None) -> SolverResult:
        shape = tuple(prior.image_shape)
        pairs = timestep_pairs(prior.schedule, self.steps)
        self.check(operator, sigma_y)
        sigma_n = self.noise_level(sigma_y)
        with torch.no_grad():
            x = randn_per_sample(generators, shape, y)
            for step, (t, s) in enumerate(pairs):
                a_t, a_s = abar(prior.schedule, t, x), abar(prior.schedule, s, x)
                rho = self.lam * sigma_n**2 * a_t / (1 - a_t)
                x0 = self.data_step(operator, y, prior.predict(x, t).x0, rho)
                eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
                if s >= 0:
                    z = randn_per_sample(generators, shape, x)
                    x = a_s.sqrt() * x0 + (1 - a_s).sqrt() * ((1 - self.zeta) ** 0.5 * eps + self.zeta**0.5 * z)
                else:
                    x = x0
                if callback is not None:
                    callback(step, {"t": t, "x": x, "total": len(pairs)})
        return SolverResult(x0=x)
