"""RED-Diff's weighting of the denoiser at timestep t, as a function of ``alpha_t`` and
``sigma_t`` (Mardani et al. 2024, Sec. 4.3: weighting by the inverse denoising SNR).

The default ``SigmaOverAlpha`` is ``w(t) = sigma_t / alpha_t = 1 / sqrt(SNR_t)`` (called
"linear" in the reference code); the others are the reference code's alternatives. Each is
its own class so that Hydra's ``weighting`` group selects one by ``_target_``.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Weighting:
    def __call__(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        raise NotImplementedError


class SigmaOverAlpha(Weighting):
    """``sigma_t / alpha_t`` (the paper's default; vanishes at t = 0)."""

    def __call__(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        return sigma / alpha


class SqrtSigmaOverAlpha(Weighting):
    def __call__(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        return (sigma / alpha).sqrt()


class SquareSigmaOverAlpha(Weighting):
    def __call__(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        return (sigma / alpha) ** 2


class Log1pSigmaOverAlpha(Weighting):
    def __call__(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        return torch.log1p(sigma / alpha)


class TruncatedSigmaOverAlpha(Weighting):
    """``min(sigma_t / alpha_t, max_value)``."""

    def __init__(self, max_value: float = 1.0):
        self.max_value = max_value

    def __call__(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        return (sigma / alpha).clamp(max=self.max_value)


class Constant(Weighting):
    def __call__(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        return torch.ones_like(alpha)
