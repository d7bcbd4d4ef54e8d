"""Full-reference image metrics on images mapped from [-1, 1] to [0, 1] (data range 1).

PSNR and SSIM reproduce scikit-image's ``peak_signal_noise_ratio(data_range=1)`` and
``structural_similarity(data_range=1, channel_axis=0, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`` (Wang et al. 2004's settings), batched in torch; the tests check
them against scikit-image. SSIM's Gaussian window (11 x 11, sigma 1.5) is applied without
padding, which is exactly scikit-image's filtering followed by its border crop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clipped."""
    return ((x + 1) / 2).clamp(0, 1)


def psnr(x: Tensor, ref: Tensor) -> Tensor:
    """Per-image PSNR in dB of ``x`` against ``ref`` (both in [-1, 1]), on the [0, 1] scale."""
    mse = ((to_unit(x) - to_unit(ref)) ** 2).reshape(x.shape[0], -1).mean(-1)
    return 10 * torch.log10(1.0 / mse)


def _gaussian_window(sigma: float, truncate: float, dtype, device) -> Tensor:
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim(x: Tensor, ref: Tensor, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Per-image SSIM (mean over channels and valid positions) on the [0, 1] scale."""
    a, b = to_unit(x).double(), to_unit(ref).double()
    n, c, h, w = a.shape
    g = _gaussian_window(sigma, 3.5, a.dtype, a.device)
    if h < g.numel() or w < g.numel():
        raise ValueError(f"SSIM needs images of at least {g.numel()}x{g.numel()} pixels, got {h}x{w}")
    kh = g.reshape(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = g.reshape(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(z, kh, groups=c), kw, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = k1**2, k2**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.reshape(n, -1).mean(-1).float()


def data_consistency(residual_norm2: Tensor, sigma_y: float, num_measurements: Tensor) -> Tensor:
    """``||y - A(x)|| / (sigma_y sqrt(m))`` per image: about 1 when the residual is the noise.
    NaN when sigma_y = 0 (undefined without noise)."""
    if sigma_y <= 0:
        return torch.full_like(residual_norm2, math.nan)
    return residual_norm2.sqrt() / (sigma_y * num_measurements.sqrt())


def fidelity(estimate: Tensor, x: Tensor) -> dict[str, Tensor]:
    """Per-image fidelity (B,): PSNR and SSIM for images (SSIM when at least 11 pixels wide), the
    mean squared error for vectors."""
    if estimate.ndim != 4:
        return {"mse": ((estimate - x) ** 2).reshape(x.shape[0], -1).mean(-1)}
    out = {"psnr": psnr(estimate, x)}
    if min(x.shape[-2:]) >= 11:
        out["ssim"] = ssim(estimate, x)
    return out
