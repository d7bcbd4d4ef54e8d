"""FID and KID over a run's images, with pytorch-fid's Inception-v3 features (pool3, 2048-d).

* FID (Heusel et al. 2017): ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})`` between Gaussian
  fits of the two feature sets (the matrix square root by scipy, as pytorch-fid does).
* KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel ``(x.y / d + 1)^3``, averaged
  over random subsets; reported with its standard deviation over subsets.

FID with fewer images than feature dimensions (2048) is heavily biased: rows then carry a warning.

The reference set (``metrics.fid_reference``, ``metrics.kid_reference``) is the run's ground truth,
a file (:func:`read_reference`: pytorch-fid's ``mu``/``sigma`` statistics, or features), or a folder
of images (its features computed and cached by the run layer); see :class:`Reference`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import Tensor

from ..errors import ConfigError
from .weights import MetricUnavailable, describe_missing, download_timeout

FEATURE_EXTRACTOR = "pytorch-fid InceptionV3 (FID weights), pool3, 2048-d"
FEATURE_DIM = 2048
GROUND_TRUTH = "ground_truth"  # the reference spec of the run's own clean images


@dataclass(frozen=True)
class Reference:
    """A set that a run's estimates are compared with: its features (FID and KID), or only their
    mean and covariance (FID). ``description`` names it without a machine's paths (it reaches
    summaries and committed tables)."""

    description: str
    features: np.ndarray | None = None  # (n, 2048)
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        return (self.mu, self.sigma) if self.mu is not None else gaussian_stats(self.features)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0] if self.mu is not None else self.features.shape[1])


def read_reference(path: str | Path, dim: int | None = FEATURE_DIM) -> Reference:
    """A reference file: an NPZ with ``mu`` and ``sigma`` (what pytorch-fid's ``--save-stats`` and
    ``python -m reddiff_bench fid-stats`` write; RED-diff's ``SOURCE_FID``), or features, (n, 2048),
    as an NPY (RED-diff's ``SOURCE_KID``) or an NPZ key ``features``. The features must be those of
    pytorch-fid's Inception (:data:`FEATURE_EXTRACTOR`); a file that records another extractor is
    refused, one that records none is used and described as such. ``dim``: the feature dimension
    expected (None: any; the suite then checks it against the estimates' features)."""
    path = Path(path).expanduser()
    fix = "Make one with: python -m reddiff_bench fid-stats IMAGE_DIR --out FILE."
    if not path.is_file():
        raise ConfigError(f"FID/KID reference {path} does not exist. {fix}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"FID/KID reference {path} is not an NPY/NPZ file ({err}). {fix}") from err
    extractor = None
    if hasattr(loaded, "files"):
        with loaded:
            keys = set(loaded.files)
            if "extractor" in keys:
                extractor = str(loaded["extractor"])
            if {"mu", "sigma"} <= keys:
                mu, sigma, features = loaded["mu"].astype(np.float64), loaded["sigma"].astype(np.float64), None
            elif "features" in keys:
                mu = sigma = None
                features = loaded["features"].astype(np.float64)
            else:
                raise ConfigError(f"FID/KID reference {path} holds {sorted(keys)}: expected 'mu' and 'sigma' "
                                  f"(statistics) or 'features' (n x {FEATURE_DIM}). {fix}")
    else:
        mu = sigma = None
        features = loaded.astype(np.float64)
    if extractor is not None and extractor != FEATURE_EXTRACTOR:
        raise ConfigError(f"FID/KID reference {path} was made with {extractor!r}; this project's features are "
                          f"{FEATURE_EXTRACTOR!r}, and distances across extractors mean nothing. {fix}")
    origin = "" if extractor else ", extractor not recorded"
    if features is not None:
        if features.ndim != 2 or (dim is not None and features.shape[1] != dim) or len(features) < 2:
            raise ConfigError(f"FID/KID reference {path}: features of shape {features.shape}, expected (n >= 2, "
                              f"{dim or 'd'}). {fix}")
        if not np.isfinite(features).all():
            raise ConfigError(f"FID/KID reference {path} holds NaN or infinite features. {fix}")
        return Reference(f"features file {path.name} ({len(features)} images{origin})", features=features)
    d = dim or (mu.shape[0] if mu.ndim == 1 else -1)
    if mu.shape != (d,) or sigma.shape != (d, d):
        raise ConfigError(f"FID reference {path}: mu {mu.shape} and sigma {sigma.shape}, expected ({dim or 'd'},) "
                          f"and ({dim or 'd'}, {dim or 'd'}). {fix}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ConfigError(f"FID reference {path} holds NaN or infinite statistics. {fix}")
    return Reference(f"statistics file {path.name} (mu, sigma{origin})", mu=mu, sigma=sigma)


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
