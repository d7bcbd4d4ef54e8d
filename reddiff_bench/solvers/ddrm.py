"""DDRM: denoising diffusion restoration models (Kawar, Elad, Ermon, Song, NeurIPS 2022).

Works in the SVD basis of a linear operator ``A = U S V^T``, on the VE-scaled variable
``xbar_t = x_t / sqrt(abar_t)`` with noise level ``sigma_t = sqrt(1 - abar_t) / sqrt(abar_t)``.
With ``xbar0 = V^T x0_hat``, ``ybar_i = (U^T y)_i / s_i`` (noise level ``sigma_y / s_i``), each
spectral coordinate moves from t to s as in the paper's Eq. 7-8:

* unmeasured (s_i = 0): ``xbar0 + sqrt(1 - eta^2) sigma_s (xbar_t - xbar0) / sigma_t + eta sigma_s z``;
* measured, ``sigma_s < sigma_y / s_i``:
  ``xbar0 + sqrt(1 - eta^2) sigma_s (ybar - xbar0) / (sigma_y / s_i) + eta sigma_s z``;
* measured, ``sigma_s >= sigma_y / s_i``:
  ``(1 - eta_b) xbar0 + eta_b ybar + sqrt(sigma_s^2 - eta_b^2 sigma_y^2 / s_i^2) z``.

Initialisation ``xbar_T ~ N(ybar, sigma_T^2 - sigma_y^2 / s_i^2)`` on measured coordinates
(where positive), ``N(0, sigma_T^2)`` elsewhere. No gradient through the network. Defaults
eta = 0.85, eta_b = 1, 20 steps (the paper's, and NVlabs/RED-diff ``_configs/algo/ddrm.yaml``).

The one documented deviation from the reference code (the DDRM authors' and the RED-diff
copy): a coordinate whose noise level equals y's (``sigma_s = sigma_y / s_i``, which happens only
at the last step with sigma_y = 0) takes the paper's third case (``>=``): measured coordinates
end exactly at ``y``. The reference code's strict inequalities send it to the first case, where
it ends at ``x0_hat``; ``last_step_measured="x0_hat"`` does that (on the demo's crops at
sigma_y = 0: 0.15 dB lower for box inpainting, 0.01 dB for sr4). The reference also starts from
``xbar_T / sigma_T`` where the VP state is ``sqrt(abar_T) xbar_T`` (larger by
``1 / sqrt(1 - abar_T)``, 5e-5 at t = 950); this one starts from the latter.
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


class DDRM:
    LAST_STEP_MEASURED = ("y", "x0_hat")

    def __init__(self, steps: int = 20, eta: float = 0.85, eta_b: float = 1.0, last_step_measured: str = "y"):
        if last_step_measured not in self.LAST_STEP_MEASURED:
            raise ValueError(f"unknown last_step_measured {last_step_measured!r}; "
                             f"choose one of {self.LAST_STEP_MEASURED}")
        check_number("solver.steps", steps, minimum=1, integer=True)
        check_number("solver.eta", eta, minimum=0, maximum=1)
        check_number("solver.eta_b", eta_b, minimum=0, maximum=1)
        self.steps, self.eta, self.eta_b = int(steps), float(eta), float(eta_b)
        self.last_step_measured = last_step_measured

    @staticmethod
    def check(operator: Operator) -> None:
        require_svd("DDRM", operator)

    def solve(self, prior: DiffusionPrior, operator: Operator, y: Tensor, *, sigma_y: float,
              generators: list[torch.Generator], callback: Callback | None = None) -> SolverResult:
        self.check(operator)
        shape = tuple(prior.image_shape)
        pairs = timestep_pairs(prior.schedule, self.steps)
        with torch.no_grad():
            measured, ybar, y_level = spectral_measurement(operator, y, sigma_y)  # y_level: ybar's noise level

            a_T = abar(prior.schedule, pairs[0][0], y)
            sigma_T = ((1 - a_T) / a_T).sqrt()
            z = randn_per_sample(generators, shape, y)
            init_measured = ybar + (sigma_T**2 - y_level**2).clamp_min(0).sqrt() * z
            xbar = torch.where(measured & (sigma_T > y_level), init_measured, sigma_T * z)
            x = a_T.sqrt() * operator.v(xbar)

            for step, (t, s) in enumerate(pairs):
                a_t, a_s = abar(prior.schedule, t, x), abar(prior.schedule, s, x)
                sigma_t, sigma_s = ((1 - a_t) / a_t).sqrt(), ((1 - a_s) / a_s).sqrt()
                pred = prior.predict(x, t)
                xbar0 = operator.vt(pred.x0)
                xbar_t = operator.vt(x / a_t.sqrt())
                z = randn_per_sample(generators, shape, x) if s >= 0 else torch.zeros_like(x)
                keep = (1 - self.eta**2) ** 0.5 * sigma_s
                unmeasured = xbar0 + keep * (xbar_t - xbar0) / sigma_t + self.eta * sigma_s * z
                below = xbar0 + keep * (ybar - xbar0) / torch.where(y_level > 0, y_level, 1) + self.eta * sigma_s * z
                above = ((1 - self.eta_b) * xbar0 + self.eta_b * ybar
                         + (sigma_s**2 - self.eta_b**2 * y_level**2).clamp_min(0).sqrt() * z)
                tie = (sigma_s == y_level) & (self.last_step_measured == "x0_hat")
                new = torch.where(measured & ~tie, torch.where(sigma_s >= y_level, above, below), unmeasured)
                x = a_s.sqrt() * operator.v(new)
                if callback is not None:
                    callback(step, {"t": t, "x": x.detach(), "total": len(pairs)})
        return SolverResult(x0=x)
