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


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 10_000, generator: torch.Generator | None = None,
                       chunk: int = 1000) -> float:
    """Sliced 2-Wasserstein distance between two equally sized sample sets (n, d):
    ``sqrt(mean_theta W2^2(theta^T x, theta^T y))`` over random unit directions theta; in 1-D the
    optimal coupling matches sorted projections."""
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"two sample sets of the same shape (n, d) expected, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    total, done = 0.0, 0
    while done < n_projections:
        k = min(chunk, n_projections - done)
        theta = torch.randn(x.shape[1], k, generator=generator, dtype=torch.float64).to(x.device)
        theta = theta / theta.norm(dim=0, keepdim=True)
        px = _sort_rows(theta.T @ x.T)  # (k, n): one row per direction
        py = _sort_rows(theta.T @ y.T)
        total += float(((px - py) ** 2).mean(-1).sum())
        done += k
    return (total / n_projections) ** 0.5
