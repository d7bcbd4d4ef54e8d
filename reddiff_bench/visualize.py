"""Image grids: one row per image, columns ground truth | measurement | result."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor


def save_grid(path: Path, triples: list[tuple[Tensor, Tensor, Tensor]], min_side: int = 96) -> None:
    from torchvision.utils import save_image

    images = torch.stack([im for triple in triples for im in triple]).float()
    side = images.shape[-1]
    if side < min_side:  # small crops are enlarged (nearest) so that they can be seen
        images = torch.nn.functional.interpolate(images, scale_factor=max(1, min_side // side), mode="nearest")
    save_image(((images + 1) / 2).clamp(0, 1), str(path), nrow=3, padding=2, pad_value=1.0)
