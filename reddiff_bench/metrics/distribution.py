"""Distances between sample sets."""

from __future__ import annotations

import torch
from torch import Tensor


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
        px, _ = (x @ theta).sort(dim=0)
        py, _ = (y @ theta).sort(dim=0)
        total += float(((px - py) ** 2).mean(0).sum())
        done += k
    return (total / n_projections) ** 0.5
