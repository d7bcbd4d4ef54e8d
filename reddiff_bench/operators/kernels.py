"""Blur kernels: Gaussian (optionally truncated as scipy truncates it), the camera-shake kernels of
DPS (the algorithm of the ``motionblur`` package that DPS calls), and the project's earlier
random-walk kernels (kept for runs that used them).

Random kernels are drawn from each image's torch generator: it seeds a numpy ``RandomState``
(:func:`numpy_stream`), so a kernel is a function of (seed, image id) as every artifact is.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor


def numpy_stream(generator: torch.Generator) -> np.random.RandomState:
    """A legacy numpy generator seeded from ``generator``: the draws of reference code written
    against ``np.random`` (uniform, beta, triangular, randint, choice) replay on it exactly."""
    return np.random.RandomState(int(torch.randint(0, 2**31 - 1, (), generator=generator)))


def gaussian_kernel(size: int = 61, std: float = 3.0, truncate: float | None = None) -> Tensor:
    """``size`` x ``size`` separable Gaussian of standard deviation ``std``, summing to 1.

    ``truncate``: taps farther than ``int(truncate * std + 0.5)`` pixels from the centre are zero,
    as ``scipy.ndimage.gaussian_filter`` (truncate 4.0 by default) computes it; DPS builds its
    kernel that way (util/img_utils.py ``Blurkernel``: a 61 x 61 kernel nonzero within radius 12
    at std 3). ``None``: the Gaussian over the whole square."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / std) ** 2)
    if truncate is not None:
        g = torch.where(r.abs() <= int(truncate * std + 0.5), g, 0)
    g = g / g.sum()
    return g[:, None] * g[None, :]


def dps_motion_kernel(size: int, intensity: float, rng: np.random.RandomState) -> Tensor:
    """A camera-shake kernel as DPS draws it (``MotionBlurOperator`` -> ``motionblur.Kernel``,
    LeviBorodenko/motionblur): on a canvas twice the kernel's side, a path of steps of
    ``beta(1, 30) (1.1 - intensity) diagonal`` pixels until their sum reaches
    ``0.75 diagonal (U(0, 1) + U(0, intensity^2))``; turning angles from a triangular law whose
    sign flips with probability ``beta(2, 20)``; centred on its mean point, rotated uniformly in
    (0, pi); drawn as a line ``diagonal / 150`` pixels wide, Gaussian-blurred with radius
    ``diagonal / 100``, Lanczos-resized to ``size`` and normalised to sum 1. ``rng`` is consumed
    in the package's order, so the same stream gives the package's kernel (sides of 53 px and more;
    the package draws no line below)."""
    if not 0 <= intensity <= 1:
        raise ValueError(f"motion blur intensity must be in [0, 1], got {intensity}")
    eps = 0.1  # the package's constant
    canvas = 2 * size
    diagonal = math.sqrt(2) * canvas
    max_length = 0.75 * diagonal * (rng.uniform() + rng.uniform(0, intensity**2))
    steps: list[float] = []
    while sum(steps) < max_length:
        step = rng.beta(1, 30) * (1 - intensity + eps) * diagonal
        if step < max_length:
            steps.append(step)
    max_angle = rng.uniform(0, intensity * math.pi)
    jitter = rng.beta(2, 20)
    angles = [rng.uniform(low=-max_angle, high=max_angle)]
    while len(angles) < len(steps):
        angle = rng.triangular(0, intensity * max_angle, max_angle + eps)
        angles.append(angle * (-np.sign(angles[-1]) if rng.uniform() < jitter else np.sign(angles[-1])))
    path = np.cumsum(np.asarray(steps) * np.exp(1j * np.asarray(angles)))
    path = path - sum(path) / len(steps)  # the centre of mass (a Python sum, as the package adds)
    path = path * np.exp(1j * rng.uniform(0, math.pi)) + (canvas + 1j * canvas) / 2
    # Drawn in gray: the package draws white on RGB and converts to L, which gives the same values.
    # Below 53 px the package's width int(diagonal / 150) is 0 and it draws nothing (a kernel of
    # zeros, NaN once normalised): the line is at least 1 px wide here.
    image = Image.new("L", (canvas, canvas))
    ImageDraw.Draw(image).line(xy=[(p.real, p.imag) for p in path], fill=255, width=max(1, int(diagonal / 150)))
    image = image.filter(ImageFilter.GaussianBlur(radius=int(diagonal * 0.01)))
    kernel = np.asarray(image.resize((size, size), resample=Image.LANCZOS), dtype=np.float32)
    return torch.from_numpy(kernel / kernel.sum())


def random_walk_kernel(size: int, intensity: float, generator: torch.Generator, steps: int = 2000) -> Tensor:
    """The project's earlier motion kernel (``MotionBlur(kernel="random_walk")``): a random walk
    with inertia (jerkiness ``intensity``), path length 0.6 ``size``, bilinear splats, centred on
    its centre of mass, summing to 1. Much shorter than DPS's kernels (median RMS radius about
    2 px against 10.5 px at 61 x 61, intensity 0.5): nobody's published definition."""
    angle = torch.rand((), generator=generator, dtype=torch.float64) * 2 * math.pi
    velocity = torch.stack([torch.cos(angle), torch.sin(angle)])
    position = torch.zeros(2, dtype=torch.float64)
    points = []
    step = 0.6 * size / steps
    for _ in range(steps):
        kick = torch.randn(2, generator=generator, dtype=torch.float64) * intensity
        velocity = velocity + kick * 0.5
        velocity = velocity / velocity.norm().clamp_min(1e-12)
        position = position + step * velocity
        points.append(position.clone())
    pts = torch.stack(points)
    pts = pts - pts.mean(0) + (size - 1) / 2
    pts = pts.clamp(0, size - 1 - 1e-6)
    kernel = torch.zeros(size, size, dtype=torch.float64)
    r0, c0 = pts[:, 0].floor().long(), pts[:, 1].floor().long()
    fr, fc = pts[:, 0] - r0, pts[:, 1] - c0
    for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        kernel.index_put_(((r0 + dr).clamp(max=size - 1), (c0 + dc).clamp(max=size - 1)), wgt, accumulate=True)
    return kernel / kernel.sum()


def kernel_statistics(kernel: Tensor) -> tuple[float, float, float]:
    """(RMS radius about the centroid in pixels, pixels above 1e-4 of the sum, largest weight):
    what distinguishes long streaks from small blobs."""
    k = kernel.double() / kernel.double().sum()
    rows, cols = torch.meshgrid(torch.arange(k.shape[0], dtype=k.dtype), torch.arange(k.shape[1], dtype=k.dtype),
                                indexing="ij")
    r0, c0 = (k * rows).sum(), (k * cols).sum()
    radius = (k * ((rows - r0) ** 2 + (cols - c0) ** 2)).sum().sqrt()
    return float(radius), float((k > 1e-4).sum()), float(k.max())
