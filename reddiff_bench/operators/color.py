"""Colorization: ``y = (R + G + B) / 3`` per pixel, one channel (y: (B, 1, H, W)).

SVD: per pixel the 1 x 3 row (1, 1, 1) / 3 has singular value 1 / sqrt(3) and right singular
vector (1, 1, 1) / sqrt(3); ``V`` is a fixed orthonormal 3 x 3 channel mix whose first row is that
vector (a Helmert basis), ``U = 1``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import SVDOperator

_HELMERT = torch.tensor([[1 / math.sqrt(3)] * 3,
                         [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
                         [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)]], dtype=torch.float64)


class GrayscaleOperator(SVDOperator):
    def __init__(self):
        super().__init__()
        self.register_buffer("q", _HELMERT.clone())

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(1, keepdim=True)

    def adjoint(self, y: Tensor) -> Tensor:
        return y.expand(-1, 3, -1, -1) / 3

    def vt(self, x: Tensor) -> Tensor:
        return torch.einsum("ij,bjhw->bihw", self.q.to(x.dtype), x)

    def v(self, z: Tensor) -> Tensor:
        return torch.einsum("ji,bjhw->bihw", self.q.to(z.dtype), z)

    def ut(self, y: Tensor) -> Tensor:
        return y

    def u(self, z: Tensor) -> Tensor:
        return z

    def singular_values(self) -> Tensor:
        return torch.full((1, 1, 1, 1), 1 / math.sqrt(3), dtype=torch.float64, device=self.q.device)

    def select(self, z: Tensor) -> Tensor:
        return z[:, :1]

    def embed(self, z: Tensor) -> Tensor:
        return torch.cat([z, torch.zeros_like(z).expand(-1, 2, -1, -1)], dim=1)


class Colorization:
    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {}

    def operator(self, artifacts, image_shape) -> GrayscaleOperator:
        return GrayscaleOperator()
