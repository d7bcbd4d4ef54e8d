"""Inpainting: ``y = m * x`` with a binary mask ``m`` shared by the colour channels.

``y`` keeps the image's shape, with zeros at missing pixels (which carry no measurement and no
noise). The operator is an orthogonal projection, so ``A = A^T = A^+`` and its SVD is trivial
(``U = V = I``, singular values = mask).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import SVDOperator


class MaskOperator(SVDOperator):
    def __init__(self, mask: Tensor):
        super().__init__()
        if mask.ndim != 4 or mask.shape[1] != 1:
            raise ValueError(f"mask must be (B, 1, H, W), got {tuple(mask.shape)}")
        self.register_buffer("mask", (mask > 0.5).float())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x.dtype)

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self.mask.to(y.dtype)

    def pinv(self, y: Tensor) -> Tensor:
        return y * self.mask.to(y.dtype)

    def y_support(self, y: Tensor) -> Tensor:
        return self.mask.to(y.dtype)

    def vt(self, x: Tensor) -> Tensor:
        return x

    def v(self, z: Tensor) -> Tensor:
        return z

    def ut(self, y: Tensor) -> Tensor:
        return y

    def u(self, z: Tensor) -> Tensor:
        return z

    def singular_values(self) -> Tensor:
        return self.mask


class BoxInpainting:
    """A centred square hole whose side is ``fraction`` of the image side (128 of 256 for 0.5)."""

    def __init__(self, fraction: float = 0.5):
        if not 0 < fraction < 1:
            raise ValueError(f"box fraction must be in (0, 1), got {fraction}")
        self.fraction = fraction

    def sample_artifacts(self, image_shape: tuple[int, int, int], generator: torch.Generator) -> dict[str, Tensor]:
        _, h, w = image_shape
        bh, bw = round(h * self.fraction), round(w * self.fraction)
        mask = torch.ones(1, h, w)
        top, left = (h - bh) // 2, (w - bw) // 2
        mask[:, top : top + bh, left : left + bw] = 0
        return {"mask": mask}

    def operator(self, artifacts: dict[str, Tensor], image_shape: tuple[int, int, int]) -> MaskOperator:
        return MaskOperator(artifacts["mask"])


class RandomPixelInpainting:
    """Each pixel (all channels together) is missing independently with probability ``missing``."""

    def __init__(self, missing: float = 0.7):
        if not 0 <= missing < 1:
            raise ValueError(f"missing ratio must be in [0, 1), got {missing}")
        self.missing = missing

    def sample_artifacts(self, image_shape: tuple[int, int, int], generator: torch.Generator) -> dict[str, Tensor]:
        _, h, w = image_shape
        return {"mask": (torch.rand(1, h, w, generator=generator) >= self.missing).float()}

    def operator(self, artifacts: dict[str, Tensor], image_shape: tuple[int, int, int]) -> MaskOperator:
        return MaskOperator(artifacts["mask"])
