"""DDNM and DDNM+: denoising diffusion null-space model (Wang, Yu, Zhang, ICLR 2023).

Range-null-space decomposition: at each step the denoiser's ``x0_hat`` keeps its null-space part
and takes its range-space part from the measurement, ``x0_hat <- A^+ y + (I - A^+ A) x0_hat``, then
a DDIM step (eta) from it. In the VE variables of DDRM (``xbar_t = x_t / sqrt(abar_t)``,
``sigma_t = sqrt(1 - abar_t) / sqrt(abar_t)``) and the operator's SVD, coordinate by coordinate:

* noiseless (DDNM): measured coordinates of ``V^T x0_hat`` become ``(U^T y)_i / s_i``;
* noisy (DDNM+, paper Eq. 17-19): with ``c_i = sigma_y / s_i`` the noise level of that value,
  ``lambda_i = min(1, sigma_s / c_i)`` (``Sigma_t``) blends it with the denoiser's,
  ``lambda_i (U^T y)_i / s_i + (1 - lambda_i) (V^T x0_hat)_i``, and the fresh noise of the
  coordinate shrinks to ``gamma_i = sqrt(max(0, sigma_s^2 - (lambda_i c_i)^2))`` (``Phi_t``) so that
  the measurement's own noise is not counted twice; unmeasured coordinates keep
  ``gamma = sigma_s``.

Then ``xbar_s = x0_hat + sqrt(1 - eta^2) sigma_s / sigma_t (xbar_t - x0_hat) + eta gamma z`` and
``x_s = sqrt(abar_s) xbar_s``. At sigma_y = 0 DDNM+ is DDNM. No gradient through the network.

Defaults: 100 steps, eta 0.85 (the paper; InverseBench ``configs/algorithm/ddnm.yaml``). Not
included: the time-travel trick of DDNM+ (its Algorithm 2, repeating stretches of steps), an
addition on top of the update above.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_number
from ..diffusion import randn_per_sample
from ..operators import Operator
from ..priors import DiffusionPrior
from .base import Callback, SolverResult
from .sampling import abar, require_svd, spectral_measurement, timestep_pairs


class DDNM:
    def __init__(self, steps: int = 100, eta: float = 0.85):
        check_number("solver.steps", steps, minimum=1, integer=True)
        check_number("solver.eta", eta, minimum=0, maximum=1)
        self.steps, self.eta = int(steps), float(eta)

    @staticmethod
    def check(operator: Operator) -> None:
        require_svd("DDNM", operator)

    def solve(self, prior: DiffusionPrior, operator: Operator, y: Tensor, *, sigma_y: float,
              generators: list[torch.Generator], callback: Callback | None = None) -> SolverResult:
        self.check(operator)
        shape = tuple(prior.image_shape)
        pairs = timestep_pairs(prior.schedule, self.steps)
        with torch.no_grad():
            measured, ybar, level = spectral_measurement(operator, y, sigma_y)
            x = randn_per_sample(generators, shape, y)
            for step, (t, s) in enumerate(pairs):
                a_t, a_s = abar(prior.schedule, t, x), abar(prior.schedule, s, x)
                sigma_t, sigma_s = ((1 - a_t) / a_t).sqrt(), ((1 - a_s) / a_s).sqrt()
                z0 = operator.vt(prior.predict(x, t).x0)
                lam = torch.where(level > 0, (sigma_s / torch.where(level > 0, level, 1)).clamp(max=1), 1.0)
                zhat = torch.where(measured, lam * ybar + (1 - lam) * z0, z0)
                gamma = torch.where(measured, (sigma_s**2 - (lam * level) ** 2).clamp_min(0).sqrt(), sigma_s)
                noise = randn_per_sample(generators, shape, x) if s >= 0 else torch.zeros_like(x)
                zbar_t = operator.vt(x / a_t.sqrt())
                kept = (1 - self.eta**2) ** 0.5 * sigma_s / sigma_t
                zbar_s = zhat + kept * (zbar_t - zhat) + self.eta * gamma * noise
                x = a_s.sqrt() * operator.v(zbar_s)
                if callback is not None:
                    callback(step, {"t": t, "x": x, "total": len(pairs)})
        return SolverResult(x0=x)
