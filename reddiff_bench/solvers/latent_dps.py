"""Latent DPS: the DPS update (Chung et al., ICLR 2023) on a latent prior, its measurement
residual taken through the decoder, ``||y - A(D(z0_hat(z_t)))||``, differentiated with respect to
``z_t`` (through the network and the decoder), the baseline that PSLD (Rout et al., NeurIPS 2023)
calls LDPS.

The step is the pixel solver's (``solvers/dps.py``: DDPM ancestral sampling on the respaced grid,
``zeta`` times the gradient of the residual's norm), with no clipping (latents have no range).
Defaults: 1000 steps, ``zeta`` 1 (LituRout/PSLD d734647 ``scripts/inverse.py``: ``--omega 1``, the
measurement weight, with ``--gamma 0`` for LDPS). Deviation: PSLD's code runs LDPS with DDIM
``eta`` 0 (its ``--ddim_eta`` default); this is DPS's ancestral step, as the DPS paper defines it.
PSLD itself, with its DDIM step and gluing term, is ``solver=latent_psld``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..operators import Operator
from .base import Callback, SolverResult
from .dps import DPS
from .latent import DecodedOperator, decoded, require_latent_prior


class LatentDPS:
    space = "latent"

    def __init__(self, steps: int = 1000, zeta: float = 1.0, residual: str = "measured"):
        self.dps = DPS(steps=steps, zeta=zeta, clip_x0=False, spacing="respaced", residual=residual)
        self.steps = self.dps.steps

    def solve(self, prior, operator: Operator, y: Tensor, *, sigma_y: float, generators: list[torch.Generator],
              callback: Callback | None = None) -> SolverResult:
        require_latent_prior("latent_dps", prior)
        z = self.dps.solve(prior.latent, DecodedOperator(operator, prior), y, sigma_y=sigma_y,
                           generators=generators, callback=callback).x0
        return SolverResult(x0=decoded(prior, z))
