"""PSLD: posterior sampling with latent diffusion (Rout et al., NeurIPS 2023, Alg. 2).

A DDIM step on the latents, then a gradient step on ``z_t`` of two terms through the decoder:

    omega * ||y - A(D(z0_hat))||  +  gamma * ||E(A^+ y + (I - A^+ A) D(z0_hat)) - z0_hat||,

the measurement residual (latent DPS) and the "gluing" term, which asks the decoded estimate, with
its measured part replaced by the measurement, to encode back to the same latent. Both gradients
pass through the network, the decoder and (gluing) the encoder: one VJP of each per step.

Defaults after the official code (LituRout/PSLD d734647, ``scripts/inverse.py`` and
``ldm/models/diffusion/psld.py``): 1000 DDIM steps with eta 0 on the LDM code's grid
(``grid="ldm"``: ``t = 1 + i T / steps``, ending at ``abar_0``; ``grid="uniform"`` is the project's
grid, ending at a clean estimate), omega 1, gamma 0.1; its LDM scripts use omega 0.1 and gamma 0.1.
Its sampler is replayed in ``tests/test_latent.py`` (``tests/fixtures/latent/``).

Documented deviations: the gluing term uses the pseudo-inverse ``A^+`` where the code uses
``A^T`` (the same for masks and any operator with orthonormal rows, where ``A^T A`` is the
projection the paper's derivation assumes); the measurement residual is the clean one, where the
code adds fresh measurement noise to ``A(D(z0_hat))`` before the norm; norms are per image (the
code's are over the batch).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_number
from ..diffusion import randn_per_sample
from ..operators import LinearOperator, Operator
from .base import Callback, SolverResult
from .latent import decoded, require_latent_prior
from .sampling import abar, check_grid, ddim_step, grid_pairs, per_sample_norm


class PSLD:
    space = "latent"

    def __init__(self, steps: int = 1000, eta: float = 0.0, omega: float = 1.0, gamma: float = 0.1,
                 grid: str = "ldm"):
        self.grid = check_grid(grid)
        check_number("solver.steps", steps, minimum=1, integer=True)
        for key, value in (("eta", eta), ("omega", omega), ("gamma", gamma)):
            check_number(f"solver.{key}", value, minimum=0)
        self.steps, self.eta, self.omega, self.gamma = int(steps), float(eta), float(omega), float(gamma)

    @staticmethod
    def check(operator: Operator) -> None:
        if not isinstance(operator, LinearOperator):
            raise ValueError(f"PSLD's gluing term needs a linear operator with a pseudo-inverse; "
                             f"{type(operator).__name__} is not one: choose latent_dps, latent_daps or latent_resample")

    def solve(self, prior, operator: Operator, y: Tensor, *, sigma_y: float, generators: list[torch.Generator],
              callback: Callback | None = None) -> SolverResult:
        require_latent_prior("latent_psld", prior)
        if self.gamma > 0:
            self.check(operator)
        shape, schedule = tuple(prior.latent_shape), prior.schedule
        support = operator.y_support(y)
        measured = operator.pinv(y) if self.gamma > 0 else None  # A^+ y, the glued measured part
        z = randn_per_sample(generators, shape, y)
        pairs = grid_pairs(schedule, self.steps, self.grid)
        for step, (t, s) in enumerate(pairs):
            z_t = z.detach().requires_grad_(True)
            pred = prior.predict(z_t, t)
            noise = randn_per_sample(generators, shape, z) if s >= 0 and self.eta > 0 else None
            z_prev = ddim_step(pred.x0, pred.eps, abar(schedule, t, z), abar(schedule, s, z), self.eta, noise)
            x_hat = prior.decode(pred.x0)
            residual = y - operator(x_hat)
            if support is not None:
                residual = residual * support
            loss = self.omega * per_sample_norm(residual)
            glue = torch.zeros_like(loss)
            if self.gamma > 0:
                glued = measured + x_hat - operator.pinv(operator(x_hat))
                glue = per_sample_norm(prior.encode(glued) - pred.x0)
                loss = loss + self.gamma * glue
            (grad,) = torch.autograd.grad(loss.sum(), z_t)
            z = (z_prev - grad).detach()
            if callback is not None:
                callback(step, {"t": t, "residual_norm": per_sample_norm(residual).detach(), "glue": glue.detach(),
                                "x": z, "total": len(pairs)})
        return SolverResult(x0=decoded(prior, z))
