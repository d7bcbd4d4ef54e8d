"""Distances between sample sets."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _sort_rows(p: Tensor) -> Tensor:
    """Sort each row; on the CPU through NumPy, about 5x faster than torch.sort for rows of ~1000."""
    if p.device.type == "cpu":
        return torch.from_numpy(np.sort(p.numpy(), axis=-1))
    return p.sort(dim=-1).values


def sliced_distances(x: Tensor, y: Tensor, n_projections: int = 10_000, generator: torch.Generator | None = None,
                     chunk: int = 1000) -> dict[str, float]:
    """Two sliced Wasserstein distances between equally sized sample sets (n, d), from the same
    random unit directions theta (in 1-D the optimal coupling matches sorted projections):

    * ``sw2 = sqrt(mean_theta W2^2(theta^T x, theta^T y))``, the usual sliced 2-Wasserstein
      distance (POT's ``ot.sliced_wasserstein_distance`` with p = 2);
    * ``sw1 = mean_theta W1(theta^T x, theta^T y)``, the mean 1-D 1-Wasserstein distance
      (``scipy.stats.wasserstein_distance``) over directions: what the MCGdiff and TMPD
      Gaussian-mixture code tabulates as its sliced Wasserstein distance.
    """
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"two sample sets of the same shape (n, d) expected, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    x, y = x.double(), y.double()
    sq, ab, done = 0.0, 0.0, 0
    while done < n_projections:
        k = min(chunk, n_projections - done)
        theta = torch.randn(x.shape[1], k, generator=generator, dtype=torch.float64).to(x.device)
        theta = theta / theta.norm(dim=0, keepdim=True)
        diff = _sort_rows(theta.T @ x.T) - _sort_rows(theta.T @ y.T)  # (k, n): one row per direction
        sq += float((diff**2).mean(-1).sum())
        ab += float(diff.abs().mean(-1).sum())
        done += k
    return {"sw2": (sq / n_projections) ** 0.5, "sw1": ab / n_projections}


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 10_000, generator: torch.Generator | None = None,
                       chunk: int = 1000) -> float:
    """The sliced 2-Wasserstein distance ``sqrt(mean_theta W2^2(theta^T x, theta^T y))`` (see
    :func:`sliced_distances`)."""
    return sliced_distances(x, y, n_projections, generator, chunk)["sw2"]
