"""FID and KID over a run's images, with pytorch-fid's Inception-v3 features (pool3, 2048-d).

* FID (Heusel et al. 2017): ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})`` between Gaussian
  fits of the two feature sets (the matrix square root by scipy, as pytorch-fid does).
* KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel ``(x.y / d + 1)^3``, averaged
  over random subsets; reported with its standard deviation over subsets.

FID with fewer images than feature dimensions (2048) is heavily biased: rows then carry a warning.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import linalg
from torch import Tensor

from .weights import MetricUnavailable, describe_missing, download_timeout

FEATURE_EXTRACTOR = "pytorch-fid InceptionV3 (FID weights), pool3, 2048-d"


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: regularise as pytorch-fid does
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(0), np.cov(features, rowvar=False)


def kernel_inception_distance(f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """Unbiased polynomial-kernel MMD^2 averaged over ``subsets`` random subsets (mean, std)."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        return math.nan, math.nan
    d = f1.shape[1]
    values = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


class InceptionFeatures(torch.nn.Module):
    """pool3 features of pytorch-fid's InceptionV3 for images in [-1, 1] (resized to 299 inside)."""

    def __init__(self):
        super().__init__()
        from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3  # heavy, optional: imported when used

        try:
            with download_timeout():
                self.model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]], normalize_input=False).eval()
        except Exception as err:
            raise MetricUnavailable(describe_missing("FID/KID Inception", FID_WEIGHTS_URL, err)) from err
        self.model.requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.clamp(-1, 1).float())[0].reshape(x.shape[0], -1)
