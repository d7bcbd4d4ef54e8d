"""Inpainting: ``y = m * x`` with a binary mask ``m``, shared by the colour channels (or one per
channel, as RED-diff's mask files hold them).

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
    """``mask``: (B, 1, H, W), shared by the channels, or (B, C, H, W), one per channel."""

    def __init__(self, mask: Tensor):
        super().__init__()
        if mask.ndim != 4:
            raise ValueError(f"mask must be (B, 1, H, W) or (B, C, H, W), got {tuple(mask.shape)}")
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
    """Free-form masks. Offline default: Palette-style random thick brush strokes, redrawn until
    the hole covers ``coverage`` = [low, high] of the image (e.g. [0.1, 0.2] or [0.2, 0.3]), seeded
    per image; an approximation of the published masks, whose strokes differ. ``masks_from``: a
    published mask file instead (RED-diff/PiGDM's bit-packed ``20ff.npz``, a stack or one dense
    NPY/PNG as DDRM and DDNM ship them; see :class:`MaskFile`), image ``i`` of the dataset taking
    mask ``i`` modulo their number as the reference code indexes it; ``coverage`` is then unused."""

    def __init__(self, coverage: tuple[float, float] = (0.1, 0.2), max_vertices: int = 6,
                 max_width_fraction: float = 0.08, max_tries: int = 1000, masks_from: str | None = None):
        low, high = coverage
        if not 0 <= low < high <= 1:
            raise ValueError(f"coverage must be [low, high] within [0, 1], got {coverage}")
        self.low, self.high = float(low), float(high)
        self.max_vertices, self.max_width_fraction, self.max_tries = max_vertices, max_width_fraction, max_tries
        self.published = MaskFile(masks_from, pick="index", key="task.degradation.masks_from") if masks_from else None
        self.indexed = self.published is not None  # the file's masks go by the image's dataset index
        self.variant = self.published.path.stem if self.published is not None else None  # the task's name says so

    def sample_artifacts(self, image_shape, generator, index: int = 0) -> dict[str, Tensor]:
        if self.published is not None:
            return self.published.sample_artifacts(image_shape, generator, index)
        _, h, w = image_shape
        max_width = max(2.0, self.max_width_fraction * max(h, w))
        for _ in range(self.max_tries):
            hole = torch.zeros(h, w, dtype=torch.bool)
            while hole.float().mean() < self.low:
                _stroke(hole, generator, self.max_vertices, max_width)
            if hole.float().mean() <= self.high:
                return {"mask": (~hole).float()[None]}
        raise RuntimeError(f"no free-form mask with coverage in [{self.low}, {self.high}] after {self.max_tries} tries")


class PackedMasks:
    """A stack of masks in RED-diff's file format (NVlabs/RED-diff utils/degredations.py
    ``save_mask`` / ``load_mask``): an NPZ with ``m``, the boolean masks bit-packed by
    ``np.packbits`` (True = observed), and ``shape``, their shape, ``(n, C * H * W)`` or
    ``(n, C, H, W)``; mask ``k`` keeps each channel's own pixels (RED-diff's ``Inpainting2``
    multiplies the flattened image by it). Masks are unpacked one at a time."""

    def __init__(self, path: Path, bits: np.ndarray, shape: tuple[int, ...]):
        self.path, self.bits = path, bits
        self.n = int(shape[0])
        per = int(np.prod(shape[1:]))
        if len(shape) == 4:
            self.item_shape = tuple(int(v) for v in shape[1:])
        else:
            channels = next((c for c in (3, 1) if per % c == 0 and round((per // c) ** 0.5) ** 2 == per // c), None)
            if channels is None:
                raise ConfigError(f"mask file {path}: masks of {per} entries are not C x H x H images (shape {shape})")
            side = round((per // channels) ** 0.5)
            self.item_shape = (channels, side, side)
        self.per = per
        if bits.size * 8 < self.n * per:
            raise ConfigError(f"mask file {path} is truncated: {bits.size} bytes for shape {tuple(shape)}")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> Tensor:
        first, last = k * self.per, (k + 1) * self.per
        chunk = self.bits[first // 8 : (last + 7) // 8]
        flat = np.unpackbits(chunk)[first % 8 : first % 8 + self.per]
        return torch.from_numpy(flat.reshape(self.item_shape).astype("float32"))


class MaskFile(_MaskDegradation):
    """Masks from the user: a PNG (nonzero = observed pixel), an NPZ/NPY array (key ``mask``), a
    RED-diff mask file (:class:`PackedMasks`, many masks, each channel its own), or a directory of
    them. ``pick``: ``random``, each image draws one mask with its generator (reproducible), or
    ``index``, image ``i`` of the dataset takes mask ``i`` modulo their number, as RED-diff indexes
    its mask file (main.py ``H.set_indices(info['index'])``, ``Inpainting2.set_indices``). Masks
    are resized (nearest) to the image size when needed."""

    PICKS = ("random", "index")
    indexed = True  # sample_artifacts takes the image's dataset index

    def __init__(self, path: str, pick: str = "random", key: str = "task.degradation.path"):
        if pick not in self.PICKS:
            raise ValueError(f"mask pick must be one of {self.PICKS}, got {pick!r}")
        self.pick = pick
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".png", ".npz", ".npy"))
        elif self.path.is_file():
            self.files = [self.path]
        else:
            raise ConfigError(f"mask path {self.path} does not exist ({key}): give a PNG/NPZ/NPY file "
                              f"or a directory of them")
        if not self.files:
            raise ConfigError(f"no .png, .npz or .npy masks in {self.path}")
        self.sources = [self.open(p) for p in self.files]
        self.total = sum(len(source) for source in self.sources)

    @classmethod
    def open(cls, path: Path) -> PackedMasks | list[Path]:
        """A file's masks: a RED-diff stack, or the file itself (one mask, read when drawn)."""
        if path.suffix.lower() == ".npz":
            with np.load(path) as loaded:
                if "m" in loaded.files and "shape" in loaded.files:
                    return PackedMasks(path, loaded["m"], tuple(int(v) for v in loaded["shape"]))
                if "mask" not in loaded.files:
                    raise ConfigError(f"mask file {path} holds {sorted(loaded.files)}: expected 'mask' (one mask) or "
                                      f"'m' and 'shape' (RED-diff's bit-packed masks)")
        return [path]

    @staticmethod
    def load(path) -> Tensor:
        """One mask (H, W) from a PNG, NPY or NPZ (``mask``) file, channels merged."""
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

    def mask(self, k: int) -> Tensor:
        """Mask ``k`` of all the files' masks, (C, H, W) with C = 1 (shared) or the image's channels."""
        for source in self.sources:
            if k < len(source):
                return self.load(source[k])[None] if isinstance(source, list) else source[k]
            k -= len(source)
        raise IndexError(k)

    def sample_artifacts(self, image_shape, generator, index: int = 0) -> dict[str, Tensor]:
        c, h, w = image_shape
        if self.pick == "index":
            k = index % self.total
        else:
            k = int(torch.randint(0, self.total, (), generator=generator)) if self.total > 1 else 0
        mask = self.mask(k)
        if mask.shape[0] not in (1, c):
            raise ConfigError(f"mask {k} of {self.path} has {mask.shape[0]} channels; the images have {c}")
        if tuple(mask.shape[-2:]) != (h, w):
            mask = torch.nn.functional.interpolate(mask[None], size=(h, w), mode="nearest")[0]
        return {"mask": mask}


class Denoising:
    """``y = x + noise``: the identity operator (a mask of ones)."""

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {}

    def operator(self, artifacts, image_shape) -> MaskOperator:
        _, h, w = image_shape
        return MaskOperator(torch.ones(1, 1, h, w))
