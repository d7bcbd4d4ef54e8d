"""RED-Diff in latent space: the variational objective of RED-Diff (Mardani et al., ICLR 2024;
``solvers/reddiff.py``) over the latent mean ``mu``: the data term through the decoder,
``||y - A(D(mu))||^2 / 2`` (its gradient a VJP through the decoder each step, none through the
network), the regulariser the latent network's denoising residual ``sg(eps_theta(z_t, t) - eps)^T mu``
with ``z_t = alpha_t mu + sigma_t eps``. The result is ``D(mu)``.

There is no official latent RED-Diff code (NVlabs/RED-diff is pixel-space only): every default
and option is RED-Diff's own (``_configs/algo/reddiff.yaml``: lam 0.25, Adam lr 0.1 via the
optimizer group, w(t) = sigma_t / alpha_t via the weighting group, 100 steps), and the
initialisation ``pinv`` is the encoded pseudo-inverse ``E(A^+ y)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..operators import Operator
from .base import Callback, SolverResult
from .latent import DecodedOperator, decoded, require_latent_prior
from .reddiff import REDDiff


class LatentREDDiff(REDDiff):
    space = "latent"

    def solve(self, prior, operator: Operator, y: Tensor, *, sigma_y: float, generators: list[torch.Generator],
              callback: Callback | None = None) -> SolverResult:
        require_latent_prior("latent_reddiff", prior)
        result = super().solve(prior.latent, DecodedOperator(operator, prior), y, sigma_y=sigma_y,
                               generators=generators, callback=callback)
        return SolverResult(x0=decoded(prior, result.x0), diagnostics=result.diagnostics)
