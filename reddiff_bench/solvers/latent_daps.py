"""Latent DAPS (Zhang et al., CVPR 2025, its latent-diffusion variant): DAPS's annealing
(``solvers/daps.py``) over latents, the Langevin steps on ``z0`` with the measurement likelihood
taken through the decoder, ``||A(D(z0)) - y||^2 / (2 tau^2)`` (a decoder VJP per Langevin step).

Defaults after the official code (zhangbingliang2019/DAPS 098df6b): ``configs/sampler/
latent_edm_daps.yaml`` (50 annealing levels from 10 to 0.1; 2 ODE steps down to 0.001) and
``configs/task/inpainting.yaml`` ``ldm:`` (15 Markov-chain steps, lr 9.02e-6, lr_min_ratio 0.13,
tau 0.01). Deviation: those configs use HMC with momentum 0.74; this is DAPS's Langevin chain
(momentum 0), so the same lr moves the chain less and the step settings may need tuning
(``conf/search/latent_daps.yaml``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..operators import Operator
from .base import Callback, SolverResult
from .daps import DAPS
from .latent import DecodedOperator, decoded, require_latent_prior


class LatentDAPS(DAPS):
    space = "latent"

    def __init__(self, annealing_steps: int = 50, sigma_max: float = 10.0, sigma_min: float = 0.1,
                 ode_steps: int = 2, ode_sigma_min: float = 0.001, langevin_steps: int = 15, lr: float = 9.02e-6,
                 lr_min_ratio: float = 0.13, tau: float | None = 0.01):
        super().__init__(annealing_steps, sigma_max, sigma_min, ode_steps, ode_sigma_min, langevin_steps, lr,
                         lr_min_ratio, tau)

    def solve(self, prior, operator: Operator, y: Tensor, *, sigma_y: float, generators: list[torch.Generator],
              callback: Callback | None = None) -> SolverResult:
        require_latent_prior("latent_daps", prior)
        z = super().solve(prior.latent, DecodedOperator(operator, prior), y, sigma_y=sigma_y, generators=generators,
                          callback=callback).x0
        return SolverResult(x0=decoded(prior, z))
