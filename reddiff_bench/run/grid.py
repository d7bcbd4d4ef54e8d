"""Image grids: one row per image, columns ground truth | measurement | result, each column titled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor


def save_grid(path: Path, triples: list[tuple[Tensor, Tensor, Tensor]], titles: tuple[str, ...] = (
        "ground truth", "measurement", "result"), min_side: int = 96) -> None:
    """``triples`` of (C, H, W) images in [-1, 1]; small crops are enlarged (nearest) to be seen."""

    images = torch.stack([im for triple in triples for im in triple]).float()
    side = images.shape[-1]
    if side < min_side:
        images = torch.nn.functional.interpolate(images, scale_factor=max(1, min_side // side), mode="nearest")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    pixels = (((images + 1) / 2).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    n_cols, pad, title_h = len(titles), 2, 14
    h, w = pixels.shape[1:3]
    n_rows = len(triples)
    canvas = np.full((title_h + n_rows * (h + pad) + pad, n_cols * (w + pad) + pad, 3), 255, np.uint8)
    for k, image in enumerate(pixels):
        r, c = divmod(k, n_cols)
        top, left = title_h + pad + r * (h + pad), pad + c * (w + pad)
        canvas[top : top + h, left : left + w] = image
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for c, title in enumerate(titles):
        width = draw.textlength(title, font=font)
        draw.text((pad + c * (w + pad) + max(0, (w - width) / 2), 1), title, fill=(0, 0, 0), font=font)
    picture.save(path)


def measurement_image(y: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A picture of the measurement ``y`` (1, ...) for a grid: ``y`` itself when image-shaped, else
    upsampled (nearest) when it has the image's channels, else black."""
    if tuple(y.shape[1:]) == tuple(shape):
        return y
    if y.ndim == 4 and y.shape[1] == shape[0]:
        return torch.nn.functional.interpolate(y, size=shape[1:], mode="nearest")
    return torch.zeros(1, *shape, device=y.device)
