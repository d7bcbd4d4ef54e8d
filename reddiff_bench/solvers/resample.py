"""ReSample (Song, Kwon, Zhang, Hu, Qu, Shen; ICLR 2024): hard data consistency in latent
diffusion, by optimisation, then stochastic resampling.

Each step of a DDIM sampler over latents (eta 0):

1. the unconditional DDIM step ``z_t -> z_s``, then a latent-DPS step on it:
   ``z_s -= dps_scale * abar_t * grad_{z_t} ||y - A(D(z0_hat(z_t)))||``;
2. on every ``every``-th step of the last two thirds of the grid (not the last): "time travel",
   ``travel`` unconditional DDIM steps from ``z_s`` whose last Tweedie estimate is ``z0_hat``;
   then hard data consistency, started from it:

   * in the middle third, in pixel space: ``x* = argmin_x ||y - A(x)||^2`` from ``D(z0_hat)``
     (AdamW, lr ``pixel_lr``, at most ``pixel_iters`` iterations), then ``z0(y) = E(x*)``;
   * in the last third, in latent space: ``z0(y) = argmin_z ||y - A(D(z))||^2`` from ``z0_hat``
     (AdamW, lr ``latent_lr``, at most ``latent_iters`` iterations, stopped when the loss exceeds
     its value ``window`` iterations before);

   each stops early once the mean squared residual falls below ``tol^2``;
3. stochastic resampling: ``z_s ~ N((g sqrt(abar_s) z0(y) + (1 - abar_s) z_s) / (g + 1 - abar_s),
   1 / (1 / g + 1 / (1 - abar_s)))`` with ``g = gamma (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s)``.

After the last step, one more latent optimisation from the final latent; its decoding is the
result.

Defaults after the official code (soominkwon/resample 3e332b2, ``sample_condition.py`` and
``ldm/models/diffusion/ddim.py``): 500 DDIM steps, eta 0, on that code's grid (``grid="ldm"``,
:func:`~reddiff_bench.solvers.sampling.ldm_pairs`; ``grid="uniform"`` is the project's), DPS
scale 0.5 abar_t, every 10th step, 5 time-travel steps, gamma 40, pixel AdamW lr 1e-2 for up to
2000 iterations, latent AdamW lr 5e-3 for up to 500 iterations with a 200-iteration window, tol
1e-3; each optimisation steps before it checks its stopping rules, as the code's loops do. Its
sampler is replayed in ``tests/test_latent.py`` (``tests/fixtures/latent/``).

Documented deviations, each of which ``code_quirks=True`` turns back into the code's behaviour
(the replay runs with it; it also serves ablations):

* the code's "Tweedie" estimate, used for the DPS residual and as the start of the
  data-consistency optimisations, is ``(z_t - (1 - abar_t) eps) / sqrt(abar_t)``, not Tweedie's
  ``(z_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (the paper's Eq. for ``z0_hat``), which this
  solver uses;
* the code's time-travel steps pass the network the next grid timestep but take their DDIM
  coefficients from the current one (one grid step too high); here both are the next one's.

Also: losses, norms and early stopping are per image (the code's are over the batch, which makes
an image's result depend on its batch: identical for one image); the encoder is the autoencoder's
mean (the code's LDM VQ encoder is deterministic too).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_number
from ..diffusion import randn_per_sample
from ..operators import Operator
from .base import Callback, SolverResult, per_sample_mean
from .latent import decoded, fit_per_image, require_latent_prior
from .sampling import abar, check_grid, ddim_step, grid_pairs, per_sample_norm


class ReSample:
    space = "latent"

    def __init__(self, steps: int = 500, dps_scale: float = 0.5, every: int = 10, travel: int = 5,
                 gamma: float = 40.0, pixel_lr: float = 1e-2, pixel_iters: int = 2000, latent_lr: float = 5e-3,
                 latent_iters: int = 500, window: int = 200, tol: float = 1e-3, grid: str = "ldm",
                 code_quirks: bool = False):
        for key, value, limits in (("steps", steps, dict(minimum=1, integer=True)),
                                   ("dps_scale", dps_scale, dict(minimum=0)),
                                   ("every", every, dict(minimum=1, integer=True)),
                                   ("travel", travel, dict(minimum=1, integer=True)),
                                   ("gamma", gamma, dict(above=0)), ("pixel_lr", pixel_lr, dict(above=0)),
                                   ("pixel_iters", pixel_iters, dict(minimum=0, integer=True)),
                                   ("latent_lr", latent_lr, dict(above=0)),
                                   ("latent_iters", latent_iters, dict(minimum=0, integer=True)),
                                   ("window", window, dict(minimum=1, integer=True)), ("tol", tol, dict(minimum=0))):
            check_number(f"solver.{key}", value, **limits)
        self.steps, self.dps_scale, self.every, self.travel = int(steps), float(dps_scale), int(every), int(travel)
        self.gamma, self.pixel_lr, self.pixel_iters = float(gamma), float(pixel_lr), int(pixel_iters)
        self.latent_lr, self.latent_iters = float(latent_lr), int(latent_iters)
        self.window, self.tol = int(window), float(tol)
        self.grid, self.code_quirks = check_grid(grid), bool(code_quirks)

    def _estimate(self, pred, z: Tensor, a_t: Tensor) -> Tensor:
        """``z0_hat``: Tweedie's estimate, or the code's (see the module docstring)."""
        return (z - (1 - a_t) * pred.eps) / a_t.sqrt() if self.code_quirks else pred.x0

    def _fit_latent(self, prior, operator: Operator, y: Tensor, z0: Tensor) -> Tensor:
        return fit_per_image(z0, lambda z: per_sample_mean((y - operator(prior.decode(z))) ** 2), self.latent_lr,
                             self.latent_iters, self.tol**2, window=self.window)

    def _fit_pixel(self, prior, operator: Operator, y: Tensor, z0: Tensor) -> Tensor:
        with torch.no_grad():
            x0 = prior.decode(z0)
        x = fit_per_image(x0, lambda x: per_sample_mean((y - operator(x)) ** 2), self.pixel_lr, self.pixel_iters,
                          self.tol**2)
        with torch.no_grad():
            return prior.encode(x)

    def _travel(self, prior, z: Tensor, pairs: list[tuple[int, int]], k: int) -> Tensor:
        """``z0_hat`` after up to ``travel`` unconditional DDIM steps from ``z``, which is at
        ``pairs[k][0]`` (with ``code_quirks``, each step's coefficients are those of the step
        before)."""
        schedule = prior.schedule
        with torch.no_grad():
            for j in range(k, min(k + self.travel, len(pairs))):
                t, s = pairs[j - 1] if self.code_quirks else pairs[j]
                pred = prior.predict(z, pairs[j][0])
                a_t = abar(schedule, t, z)
                z0_hat = self._estimate(pred, z, a_t)
                x0 = (z - (1 - a_t).sqrt() * pred.eps) / a_t.sqrt() if self.code_quirks else pred.x0
                z = ddim_step(x0, pred.eps, a_t, abar(schedule, s, z), 0.0, None)
        return z0_hat

    def solve(self, prior, operator: Operator, y: Tensor, *, sigma_y: float, generators: list[torch.Generator],
              callback: Callback | None = None) -> SolverResult:
        require_latent_prior("latent_resample", prior)
        shape, schedule = tuple(prior.latent_shape), prior.schedule
        support = operator.y_support(y)
        z = randn_per_sample(generators, shape, y)
        pairs = grid_pairs(schedule, self.steps, self.grid)
        total, third = len(pairs), len(pairs) // 3
        for i, (t, s) in enumerate(pairs):
            index = total - i - 1  # the code's step index, counting down to 0
            a_t, a_s = abar(schedule, t, z), abar(schedule, s, z)
            z_t = z.detach().requires_grad_(True)
            pred = prior.predict(z_t, t)
            z = ddim_step(pred.x0, pred.eps, a_t, a_s, 0.0, None)
            residual = y - operator(prior.decode(self._estimate(pred, z_t, a_t)))
            if support is not None:
                residual = residual * support
            norm = per_sample_norm(residual)
            if self.dps_scale > 0:
                (grad,) = torch.autograd.grad(norm.sum(), z_t)
                z = z - self.dps_scale * a_t * grad
            z = z.detach()
            if 0 < index <= total - third and index % self.every == 0:  # never the last step
                z0_hat = self._travel(prior, z, pairs, i + 1)
                if index >= third:
                    z0_y = self._fit_pixel(prior, operator, y, z0_hat) if self.pixel_iters else z0_hat
                else:
                    z0_y = self._fit_latent(prior, operator, y, z0_hat) if self.latent_iters else z0_hat
                g = self.gamma * (1 - a_s) / (1 - a_t) * (1 - a_t / a_s)
                mean = (g * a_s.sqrt() * z0_y + (1 - a_s) * z) / (g + 1 - a_s)
                z = mean + (1 / (1 / g + 1 / (1 - a_s))).sqrt() * randn_per_sample(generators, shape, z)
            if callback is not None:
                callback(i, {"t": t, "residual_norm": norm.detach(), "x": z, "total": total})
        if self.latent_iters:
            z = self._fit_latent(prior, operator, y, z)
        return SolverResult(x0=decoded(prior, z))
