"""PiGDM: pseudoinverse-guided diffusion models (Song, Vahdat, Mardani, Kautz, ICLR 2023).

The likelihood score is approximated with ``p(x0 | x_t) ~ N(x0_hat, r_t^2 I)``,
``r_t^2 = 1 - abar_t`` (the paper's ``sigma_t^2 / (1 + sigma_t^2)`` in VE form), which gives
``p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T + sigma_y^2 I)``. Two weightings of the guidance:

* ``weighting="paper"`` (default): the paper's noisy guidance (Eq. 7-8)

      g = (d x0_hat / d x_t)^T A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat)

  with ``(r^2 A A^T + s^2 I)^{-1}`` applied through the operator's SVD (exact, any sigma_y >= 0).
  The guided score ``grad log p(x_t) + scale * g`` drives a DDIM step:
  ``eps_y = eps_hat - sqrt(1 - abar_t) scale g``, ``x0_y = (x_t - sqrt(1 - abar_t) eps_y) /
  sqrt(abar_t)``, then DDIM(eta) from ``(x0_y, eps_y)``. With a Gaussian prior these formulas
  are exact, which the tests check against the exact posterior.
* ``weighting="reference"``: the public implementation by the paper's authors (NVlabs/RED-diff,
  ``algos/pgdm.py`` with ``awd=True``, the one behind the RED-Diff paper's PiGDM numbers):
  ``g = (d x0_hat / d x_t)^T A^+ (y - A x0_hat)``, the noiseless pseudo-inverse with neither
  ``r_t^2`` nor ``sigma_y``, added after the DDIM step from ``(x0_hat, eps_hat)`` with the weight
  ``scale * sqrt(abar_s abar_t)``. At sigma_y = 0 both move ``x`` along
  ``(d x0_hat / d x_t)^T A^+ (y - A x0_hat)``; per DDIM step (eta = 0, 100 steps) the reference's
  coefficient is 5e-4 times the paper's at t = 990, 1.6 times at t = 490 and 10 times at
  t = 240: weaker at high noise, stronger at low noise. It ignores sigma_y altogether.

Why ``paper`` is the default: it is the method the paper defines, exact for a Gaussian prior
at every sigma_y, and its guidance weakens as the measurement gets noisier; the reference form
ignores sigma_y and fits the noise (data consistency far below 1). Measured on the demo's 8
crops (``+experiment=demo solver=pgdm solver.weighting=paper,reference
task.noise.sigma_y=0.05,0.2``, SR from t = 500), PSNR paper / reference:

* photos_unet16: box 29.26 / 31.68 and sr4 25.08 / 23.83 at sigma_y = 0.05; box 26.09 / 20.71
  and sr4 20.91 / 15.90 at sigma_y = 0.2;
* the exact GMM prior, distance to the exact posterior mean (MSE): box 0.0047 / 0.0045 and sr4
  0.0094 / 0.0139 at 0.05; box 0.0075 / 0.0312 and sr4 0.0246 / 0.0708 at 0.2.

The reference form wins only on noise-light inpainting; the presets that reproduce the RED-Diff
paper's noiseless tables run it as the reference code did (``conf/published/reddiff_paper.yaml``).

``paste_measured`` (with ``weighting="reference"``: the reference code's treatment of its
free-form masks, ``in2``): replace the measured pixels of ``x0_hat`` by ``y`` and zero the
guidance there before the step; mask operators only. ``start_t``: start from ``A^+ y`` noised
to the largest grid timestep at or below ``start_t`` instead of pure noise (the paper's
super-resolution start is 500; the reference code always starts from ``A^+ y`` noised to the top
grid step: ``start_t = 999``).

Defaults: DDIM eta = 0, 200 steps. The paper form is overconfident when the prior's covariance
is far from ``r_t^2 I`` (strongly correlated pixels), and the guided iteration can then blow
up with coarse steps: on the 16x16 photo GMM, 100 steps diverged on one 4x super-resolution
image in eight; 200 steps, or ``start_t = 500``, were stable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_number
from ..diffusion import randn_per_sample
from ..operators import MaskOperator, Operator
from ..priors import DiffusionPrior
from .base import Callback, SolverResult
from .sampling import abar, ddim_step, require_svd, timestep_pairs


class PiGDM:
    WEIGHTINGS = ("paper", "reference")

    def __init__(self, steps: int = 200, eta: float = 0.0, scale: float = 1.0, start_t: int | None = None,
                 weighting: str = "paper", paste_measured: bool = False):
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f"unknown PiGDM weighting {weighting!r}; choose one of {self.WEIGHTINGS}")
        if paste_measured and weighting != "reference":
            raise ValueError("paste_measured is part of the reference code's form of PiGDM: set weighting=reference "
                             "with it (the paper form guides through x0_y, which pasting would bypass)")
        check_number("solver.steps", steps, minimum=1, integer=True)
        check_number("solver.eta", eta, minimum=0, maximum=1)
        check_number("solver.scale", scale, minimum=0)
        if start_t is not None:
            check_number("solver.start_t", start_t, minimum=0, integer=True)
        self.steps, self.eta, self.scale = int(steps), float(eta), float(scale)
        self.start_t = None if start_t is None else int(start_t)
        self.weighting, self.paste_measured = weighting, bool(paste_measured)

    def check(self, operator: Operator) -> None:
        require_svd("PiGDM", operator)
        if self.paste_measured and not isinstance(operator, MaskOperator):
            raise ValueError(f"paste_measured needs a mask operator (inpainting); {type(operator).__name__} is not "
                             f"one. Set solver.paste_measured=false.")

    def solve(self, prior: DiffusionPrior, operator: Operator, y: Tensor, *, sigma_y: float,
              generators: list[torch.Generator], callback: Callback | None = None) -> SolverResult:
        self.check(operator)
        shape = tuple(prior.image_shape)
        pairs = timestep_pairs(prior.schedule, self.steps, self.start_t)
        noise0 = randn_per_sample(generators, shape, y)
        if self.start_t is None:
            x = noise0
        else:
            a = abar(prior.schedule, pairs[0][0], y)
            x = a.sqrt() * operator.pinv(y) + (1 - a).sqrt() * noise0
        for step, (t, s) in enumerate(pairs):
            a_t, a_s = abar(prior.schedule, t, x), abar(prior.schedule, s, x)
            x_t = x.detach().requires_grad_(True)
            pred = prior.predict(x_t, t)
            with torch.no_grad():
                residual = y - operator(pred.x0)
                if self.weighting == "paper":
                    direction = operator.adjoint(operator.gram_solve(residual, 1 - a_t, sigma_y**2))
                else:
                    direction = operator.pinv(residual)
            (g,) = torch.autograd.grad(pred.x0, x_t, grad_outputs=direction)
            noise = randn_per_sample(generators, shape, x) if self.eta > 0 and s >= 0 else None
            with torch.no_grad():
                x0_hat, eps_hat = pred.x0.detach(), pred.eps.detach()
                if self.paste_measured:
                    measured = operator.y_support(y)
                    x0_hat = torch.where(measured > 0, y, x0_hat)
                    g = g * (1 - measured)
                if self.weighting == "paper":
                    eps_y = eps_hat - (1 - a_t).sqrt() * self.scale * g
                    x0_y = (x_t - (1 - a_t).sqrt() * eps_y) / a_t.sqrt()
                    x = ddim_step(x0_y, eps_y, a_t, a_s, self.eta, noise)
                else:
                    x = ddim_step(x0_hat, eps_hat, a_t, a_s, self.eta, noise) + self.scale * (a_s * a_t).sqrt() * g
            if callback is not None:
                callback(step, {"t": t, "x": x.detach(), "total": len(pairs)})
        return SolverResult(x0=x.detach())
