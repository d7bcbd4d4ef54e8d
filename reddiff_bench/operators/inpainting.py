"""Inpainting: ``y = m * x`` with a binary mask ``m`` shared by the colour channels.

``y`` keeps the image's shape, with zeros at missing pixels (which carry no measurement and no
noise). The operator is an orthogonal projection, so ``A = A^T = A^+`` and its SVD is trivial
(``U = V = I``, singular values = mask).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import ConfigError
from .base import SVDOperator
from .kernels import numpy_stream


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


class _MaskDegradation:
    """Degradations whose artifact is a mask (1, H, W): the operator is the mask projection."""

    def operator(self, artifacts: dict[str, Tensor], image_shape: tuple[int, int, int]) -> MaskOperator:
        return MaskOperator(artifacts["mask"])


class BoxInpainting(_MaskDegradation):
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


class RandomPixelInpainting(_MaskDegradation):
    """Each pixel (all channels together) is missing independently with probability ``missing``."""

    def __init__(self, missing: float = 0.7):
        if not 0 <= missing < 1:
            raise ValueError(f"missing ratio must be in [0, 1), got {missing}")
        self.missing = missing

    def sample_artifacts(self, image_shape: tuple[int, int, int], generator: torch.Generator) -> dict[str, Tensor]:
        _, h, w = image_shape
        return {"mask": (torch.rand(1, h, w, generator=generator) >= self.missing).float()}


class RandomBoxInpainting(_MaskDegradation):
    """A square hole of side ``fraction`` of the image side at a uniformly random position."""

    def __init__(self, fraction: float = 0.5):
        if not 0 < fraction < 1:
            raise ValueError(f"box fraction must be in (0, 1), got {fraction}")
        self.fraction = fraction

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        _, h, w = image_shape
        bh, bw = round(h * self.fraction), round(w * self.fraction)
        top = int(torch.randint(0, h - bh + 1, (), generator=generator))
        left = int(torch.randint(0, w - bw + 1, (), generator=generator))
        mask = torch.ones(1, h, w)
        mask[:, top : top + bh, left : left + bw] = 0
        return {"mask": mask}


class DPSBoxInpainting(_MaskDegradation):
    """A box hole placed as DPS places it (util/img_utils.py ``mask_generator('box')`` and
    ``random_sq_bbox``): height and width each ``randint(low, high)`` (high excluded), top and left
    ``randint(margin, side - margin - box)``, so the hole keeps ``margin`` pixels from the top and
    left borders and at least ``margin + 1`` from the others. Sizes are DPS's pixels at
    ``reference_size`` (256: a 128 x 128 hole, margin 16) scaled to the image. Drawn from the
    image's generator in DPS's order."""

    def __init__(self, length_range: tuple[int, int] = (128, 129), margin: int = 16, reference_size: int = 256):
        low, high = (int(v) for v in length_range)
        if not 0 < low < high:
            raise ValueError(f"box length_range must be [low, high) with 0 < low < high, got {length_range}")
        self.low, self.high, self.margin, self.reference_size = low, high, int(margin), int(reference_size)

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return self.draw(image_shape, numpy_stream(generator))

    def draw(self, image_shape, rng: np.random.RandomState) -> dict[str, Tensor]:
        """The mask from a numpy stream (DPS draws from ``np.random``: the same stream, the same box)."""
        _, h, w = image_shape
        scale = h / self.reference_size
        low, margin = round(self.low * scale), round(self.margin * scale)
        high = max(round(self.high * scale), low + 1)
        if h - 2 * margin - (high - 1) <= 0 or w - 2 * margin - (high - 1) <= 0:
            raise ConfigError(f"a DPS box of up to {high - 1} px with a {margin} px margin does not fit a {h} x {w} "
                              f"image: lower task.degradation.length_range or margin")
        bh, bw = rng.randint(low, high), rng.randint(low, high)
        top, left = rng.randint(margin, h - margin - bh), rng.randint(margin, w - margin - bw)
        mask = torch.ones(1, h, w)
        mask[:, top : top + bh, left : left + bw] = 0
        return {"mask": mask}


class DPSRandomInpainting(_MaskDegradation):
    """Random missing pixels as DPS draws them (util/img_utils.py ``mask_generator('random')``):
    a missing fraction ``p ~ U(low, high)`` per image, then exactly ``int(H W p)`` distinct pixels
    (all channels) chosen uniformly. Drawn from the image's generator in DPS's order."""

    def __init__(self, prob_range: tuple[float, float] = (0.3, 0.7)):
        low, high = (float(v) for v in prob_range)
        if not 0 <= low <= high < 1:
            raise ValueError(f"prob_range must be [low, high] within [0, 1), got {prob_range}")
        self.low, self.high = low, high

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return self.draw(image_shape, numpy_stream(generator))

    def draw(self, image_shape, rng: np.random.RandomState) -> dict[str, Tensor]:
        """The mask from a numpy stream (DPS draws from ``np.random``: the same stream, the same mask)."""
        _, h, w = image_shape
        total = h * w
        missing = rng.choice(total, int(total * rng.uniform(self.low, self.high)), replace=False)
        mask = torch.ones(total)
        mask[torch.from_numpy(missing)] = 0
        return {"mask": mask.reshape(1, h, w)}


class HalfInpainting(_MaskDegradation):
    """The right half of the image is missing (``side``: right, left, top or bottom)."""

    SIDES = ("right", "left", "top", "bottom")

    def __init__(self, side: str = "right"):
        if side not in self.SIDES:
            raise ValueError(f"side must be one of {self.SIDES}, got {side!r}")
        self.side = side

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        _, h, w = image_shape
        mask = torch.ones(1, h, w)
        region = {"right": (slice(None), slice(w // 2, None)), "left": (slice(None), slice(None, w // 2)),
                  "top": (slice(None, h // 2), slice(None)), "bottom": (slice(h // 2, None), slice(None))}[self.side]
        mask[(slice(None),) + region] = 0
        return {"mask": mask}


def _stroke(hole: Tensor, generator: torch.Generator, max_vertices: int, max_width: float) -> None:
    """Paint one brush stroke (a polyline of thick segments with round joints) into ``hole``."""
    h, w = hole.shape
    rows = torch.arange(h, dtype=torch.float32)[:, None]
    cols = torch.arange(w, dtype=torch.float32)[None, :]
    r = float(torch.rand((), generator=generator)) * h
    c = float(torch.rand((), generator=generator)) * w
    width = (0.3 + 0.7 * float(torch.rand((), generator=generator))) * max_width
    angle = float(torch.rand((), generator=generator)) * 2 * 3.141592653589793
    for _ in range(1 + int(torch.randint(0, max_vertices, (), generator=generator))):
        angle += (float(torch.rand((), generator=generator)) - 0.5) * 3.141592653589793
        length = (0.1 + 0.3 * float(torch.rand((), generator=generator))) * max(h, w)
        r2 = min(max(r + length * torch.tensor(angle).sin().item(), 0.0), h - 1.0)
        c2 = min(max(c + length * torch.tensor(angle).cos().item(), 0.0), w - 1.0)
        # distance of every pixel to the segment (r, c) -> (r2, c2)
        dr, dc = r2 - r, c2 - c
        t = (((rows - r) * dr + (cols - c) * dc) / max(dr * dr + dc * dc, 1e-9)).clamp(0, 1)
        dist = ((rows - (r + t * dr)) ** 2 + (cols - (c + t * dc)) ** 2).sqrt()
        hole |= dist <= width / 2
        r, c = r2, c2


class FreeFormInpainting(_MaskDegradation):
    """Palette-style free-form masks: random thick brush strokes, redrawn until the hole covers
    ``coverage`` = [low, high] of the image (e.g. [0.1, 0.2] or [0.2, 0.3]); seeded per image."""

    def __init__(self, coverage: tuple[float, float] = (0.1, 0.2), max_vertices: int = 6,
                 max_width_fraction: float = 0.08, max_tries: int = 1000):
        low, high = coverage
        if not 0 <= low < high <= 1:
            raise ValueError(f"coverage must be [low, high] within [0, 1], got {coverage}")
        self.low, self.high = float(low), float(high)
        self.max_vertices, self.max_width_fraction, self.max_tries = max_vertices, max_width_fraction, max_tries

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        _, h, w = image_shape
        max_width = max(2.0, self.max_width_fraction * max(h, w))
        for _ in range(self.max_tries):
            hole = torch.zeros(h, w, dtype=torch.bool)
            while hole.float().mean() < self.low:
                _stroke(hole, generator, self.max_vertices, max_width)
            if hole.float().mean() <= self.high:
                return {"mask": (~hole).float()[None]}
        raise RuntimeError(f"no free-form mask with coverage in [{self.low}, {self.high}] after {self.max_tries} tries")


class MaskFile(_MaskDegradation):
    """Masks from the user: a PNG (nonzero = observed pixel) or an NPZ/NPY array (key ``mask``),
    or a directory of them from which each image draws one with its generator (reproducible).
    Masks are resized (nearest) to the image size when needed."""

    def __init__(self, path: str):

        self.path = Path(path).expanduser()
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".png", ".npz", ".npy"))
        elif self.path.is_file():
            self.files = [self.path]
        else:
            raise ConfigError(f"mask path {self.path} does not exist (task.degradation.path): give a PNG/NPZ file "
                              f"or a directory of them")
        if not self.files:
            raise ConfigError(f"no .png, .npz or .npy masks in {self.path}")

    @staticmethod
    def load(path) -> Tensor:

        if path.suffix.lower() == ".png":

            with Image.open(path) as im:
                array = np.asarray(im.convert("L"))
        else:
            loaded = np.load(path)
            array = loaded["mask"] if hasattr(loaded, "files") else loaded
        mask = torch.from_numpy((np.asarray(array) > 0).astype("float32"))
        if mask.ndim == 3:
            mask = mask.amax(0) if mask.shape[0] <= 4 else mask.amax(-1)
        return mask

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        _, h, w = image_shape
        index = int(torch.randint(0, len(self.files), (), generator=generator)) if len(self.files) > 1 else 0
        mask = self.load(self.files[index])
        if tuple(mask.shape) != (h, w):
            mask = torch.nn.functional.interpolate(mask[None, None], size=(h, w), mode="nearest")[0, 0]
        return {"mask": mask[None]}


class Denoising:
    """``y = x + noise``: the identity operator (a mask of ones)."""

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {}

    def operator(self, artifacts, image_shape) -> MaskOperator:
        _, h, w = image_shape
        return MaskOperator(torch.ones(1, 1, h, w))
