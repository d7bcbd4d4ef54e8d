"""The photos that scikit-image bundles, as an offline data source.

The split is fixed: the GMM prior and the small trained prior are fitted on ``TRAIN_PHOTOS``;
the ``photos`` dataset serves crops of ``HELDOUT_PHOTOS``, which no prior has seen.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data  # heavy, optional: imported when used

    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]
    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise ValueError(f"scikit-image bundles no photo called {name!r}; known RGB photos: {sorted(RGB_PHOTOS)}")
    return loader()


RGB_PHOTOS = {
    "astronaut", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
    "motorcycle_left", "chelsea", "coffee",
}
TRAIN_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "retina", "hubble_deep_field", "motorcycle_left")
HELDOUT_PHOTOS = ("chelsea", "coffee")


@lru_cache(maxsize=32)
def photo_tensor(name: str, scale: float = 1.0) -> Tensor:
    """Photo ``name`` as a 3xHxW float32 tensor in [-1, 1], resized by ``scale`` (antialiased)."""
    if name not in RGB_PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose among {sorted(RGB_PHOTOS)}")
    array = _skimage_photo(name)
    if array.ndim != 3 or array.shape[2] < 3:
        raise ValueError(f"photo {name!r} is not RGB (shape {array.shape})")
    x = torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1).float() / 127.5 - 1.0
    if scale != 1.0:
        x = F.interpolate(x[None], scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)[0]
    return x.clamp(-1.0, 1.0).contiguous()


def crop_positions(height: int, width: int, size: int, count: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """``count`` uniformly random top-left corners of ``size`` x ``size`` crops."""
    if size > min(height, width):
        raise ValueError(f"crop size {size} exceeds the photo ({height}x{width})")
    rows = torch.randint(0, height - size + 1, (count,), generator=generator)
    cols = torch.randint(0, width - size + 1, (count,), generator=generator)
    return list(zip(rows.tolist(), cols.tolist()))


def random_crops(names: tuple[str, ...], size: int, count: int, scale: float, generator: torch.Generator) -> Tensor:
    """``count`` random crops (count x 3 x size x size), spread evenly over the photos ``names``."""
    per_photo = [count // len(names) + (1 if i < count % len(names) else 0) for i in range(len(names))]
    crops = []
    for name, n in zip(names, per_photo):
        photo = photo_tensor(name, scale)
        for r, c in crop_positions(photo.shape[1], photo.shape[2], size, n, generator):
            crops.append(photo[:, r : r + size, c : c + size])
    return torch.stack(crops)
