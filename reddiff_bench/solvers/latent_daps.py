"""Latent DAPS (Zhang et al., CVPR 2025, its latent-diffusion variant), as the official code runs
it (zhangbingliang2019/DAPS 098df6b, ``sampler.py`` ``LatentDAPS``, ``cores/mcmc.py``,
``cores/scheduler.py``, ``forward_operator`` ``LatentWrapper``): DAPS's annealing on continuous
noise levels, over latents.

The state is a latent on the VE scale, ``z_t = z0 + sigma eps``; ``D(z; sigma)`` is the prior's
denoiser at noise level ``sigma``: its ``x0`` prediction from ``z / sqrt(1 + sigma^2)`` at the
fractional timestep whose ``abar`` is ``1 / (1 + sigma^2)``
(:meth:`~reddiff_bench.diffusion.VPSchedule.fractional_timestep`). From ``z = sigma_max eps``, at
each of ``annealing_steps`` levels ``sigma_i`` (EDM's schedule: ``annealing_steps + 1`` points from
``sigma_max`` to ``sigma_min``, linear in ``sigma^(1/7)``, the last one left out, as the code's
scheduler does):

1. reverse diffusion: ``z0_hat``, the probability-flow ODE by Euler's method,
   ``z <- z + (s - u) (z - D(z; u)) / u``, over ``ode_steps + 1`` EDM points from ``sigma_i`` down to
   ``ode_sigma_min`` (one network call per step; the result keeps ``ode_sigma_min`` of noise);
2. ``mcmc_steps`` steps of a Markov chain on ``z0`` from ``z0_hat``, for the score
   ``(z0_hat - z0) / sigma_i^2 - clip(grad ||A(D_ae(z0)) - y||^2) / tau^2`` (the measurement
   likelihood through the decoder ``D_ae``, one decoder pass and VJP per step; the code's data term
   has no 1/2: its likelihood's standard deviation is ``tau / sqrt(2)``; the gradient is clipped to
   ``[-grad_clip, grad_clip]`` entrywise, as ``LatentWrapper.gradient`` does): ``algo="hmc"`` (the
   code's latent configs), ``v <- m v + sqrt(lr) score + sqrt(2 (1 - m)) e``, ``z0 <- z0 + sqrt(lr) v``
   with a fresh ``v`` at each level; ``algo="langevin"``, ``z0 <- z0 + lr score + sqrt(2 lr) e``. The
   step decays linearly from ``lr`` to ``lr * lr_min_ratio``: ``lr (1 + i / (annealing_steps + 1)
   (lr_min_ratio - 1))``, as the code counts;
3. forward: ``z = z0 + sigma_{i+1} eps`` (after the last level, ``z = z0``); the result is
   ``D_ae(z)``.

Defaults: ``configs/sampler/latent_edm_daps.yaml`` (50 levels from 10 to 0.1; 2 ODE steps down to
0.001) and ``configs/task/inpainting.yaml`` ``ldm:`` (HMC, 15 steps, lr 9.02e-6, lr_min_ratio 0.13,
momentum 0.74, tau 0.01). Its sampler is replayed in ``tests/test_latent.py``
(``tests/fixtures/latent/``). Documented deviations: the code maps a noise level to its network's
time through the continuous VP SDE of the linear schedule (``VPPrecond``: beta 0.1 to 20); here it
is the prior's own schedule, interpolated (the same ``abar``, whatever the schedule); where the
code's chain meets a NaN it returns zeros, here the NaN stays and the run reports the image as
diverged. Pixel DAPS (``solvers/daps.py``) follows InverseBench on integer timesteps instead.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import check_number
from ..diffusion import randn_per_sample
from ..operators import Operator
from .base import Callback, SolverResult
from .daps import edm_sigmas
from .latent import decoded, require_latent_prior


class LatentDAPS:
    space = "latent"

    ALGOS = ("hmc", "langevin")

    def __init__(self, annealing_steps: int = 50, sigma_max: float = 10.0, sigma_min: float = 0.1,
                 ode_steps: int = 2, ode_sigma_min: float = 0.001, mcmc_steps: int = 15, lr: float = 9.02e-6,
                 lr_min_ratio: float = 0.13, tau: float = 0.01, algo: str = "hmc", momentum: float = 0.74,
                 grad_clip: float | None = 1.0):
        for key, value, limits in (("annealing_steps", annealing_steps, dict(minimum=1, integer=True)),
                                   ("sigma_max", sigma_max, dict(above=0)), ("sigma_min", sigma_min, dict(above=0)),
                                   ("ode_steps", ode_steps, dict(minimum=1, integer=True)),
                                   ("ode_sigma_min", ode_sigma_min, dict(above=0)),
                                   ("mcmc_steps", mcmc_steps, dict(minimum=0, integer=True)),
                                   ("lr", lr, dict(above=0)), ("lr_min_ratio", lr_min_ratio, dict(above=0)),
                                   ("tau", tau, dict(above=0)), ("momentum", momentum, dict(minimum=0, maximum=1))):
            check_number(f"solver.{key}", value, **limits)
        if grad_clip is not None:
            check_number("solver.grad_clip", grad_clip, above=0)
        if algo not in self.ALGOS:
            raise ValueError(f"solver.algo must be one of {self.ALGOS}, got {algo!r}")
        if sigma_min >= sigma_max:
            raise ValueError(f"solver.sigma_min ({sigma_min}) must be below solver.sigma_max ({sigma_max})")
        self.annealing_steps, self.sigma_max, self.sigma_min = int(annealing_steps), float(sigma_max), float(sigma_min)
        self.ode_steps, self.ode_sigma_min = int(ode_steps), float(ode_sigma_min)
        self.mcmc_steps, self.lr, self.lr_min_ratio = int(mcmc_steps), float(lr), float(lr_min_ratio)
        self.tau, self.algo, self.momentum = float(tau), algo, float(momentum)
        self.grad_clip = None if grad_clip is None else float(grad_clip)

    def levels(self) -> list[float]:
        """The annealing's noise levels (the code's ``sigma_steps`` without its final 0)."""
        return edm_sigmas(self.sigma_max, self.sigma_min, self.annealing_steps + 1)[:-1]

    @staticmethod
    def denoise(prior, z: Tensor, sigma: float) -> Tensor:
        """``D(z; sigma)``: the prior's clean estimate of the VE-scale latent ``z`` at ``sigma``."""
        t = prior.schedule.fractional_timestep(sigma)
        return prior.predict(z / math.sqrt(1 + sigma**2), t).x0

    def _reverse(self, prior, z: Tensor, sigma: float) -> Tensor:
        """``z0_hat``: Euler's method on the probability-flow ODE from ``sigma`` to ``ode_sigma_min``."""
        nodes = edm_sigmas(sigma, self.ode_sigma_min, self.ode_steps + 1)
        with torch.no_grad():
            for u, s in zip(nodes, nodes[1:]):
                z = z + (s - u) * (z - self.denoise(prior, z, u)) / u
        return z

    def solve(self, prior, operator: Operator, y: Tensor, *, sigma_y: float, generators: list[torch.Generator],
              callback: Callback | None = None) -> SolverResult:
        require_latent_prior("latent_daps", prior)
        latent, shape = prior.latent, tuple(prior.latent_shape)
        support = operator.y_support(y)
        levels = self.levels()
        z = self.sigma_max * randn_per_sample(generators, shape, y)
        for i, sigma in enumerate(levels):
            z0_hat = self._reverse(latent, z, sigma)
            lr = self.lr * (1 + i / (self.annealing_steps + 1) * (self.lr_min_ratio - 1))
            velocity = randn_per_sample(generators, shape, z) if self.algo == "hmc" and self.mcmc_steps else None
            z0 = z0_hat.clone()
            for _ in range(self.mcmc_steps):
                z0.requires_grad_(True)
                residual = operator(prior.decode(z0)) - y
                if support is not None:
                    residual = residual * support
                (grad,) = torch.autograd.grad(residual.pow(2).sum(), z0)
                with torch.no_grad():
                    if self.grad_clip is not None:
                        grad = grad.clamp(-self.grad_clip, self.grad_clip)
                    score = (z0_hat - z0) / sigma**2 - grad / self.tau**2
                    noise = randn_per_sample(generators, shape, z0)
                    if velocity is None:
                        z0 = z0 + lr * score + math.sqrt(2 * lr) * noise
                    else:
                        velocity = (self.momentum * velocity + math.sqrt(lr) * score
                                    + math.sqrt(2 * (1 - self.momentum)) * noise)
                        z0 = z0 + math.sqrt(lr) * velocity
            z0 = z0.detach()
            z = z0 + levels[i + 1] * randn_per_sample(generators, shape, z0) if i + 1 < len(levels) else z0
            if callback is not None:
                callback(i, {"t": float(latent.schedule.fractional_timestep(sigma)), "x": z, "total": len(levels)})
        return SolverResult(x0=decoded(prior, z))
