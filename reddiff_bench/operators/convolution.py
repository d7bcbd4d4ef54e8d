"""Deblurring: circular convolution with a per-image kernel, with an exact real SVD.

Boundary convention: periodic (the image is treated as a torus), which is what FFT-based
convolution computes; the kernel is centred at pixel (0, 0). For a real kernel with DFT
``lambda_k = |lambda_k| e^{i phi_k}`` the convolution has the real SVD

    V^T x = Hart(x),    U^T y = Hart(F^-1(e^{-i phi} F y)),    s = |lambda|,

where ``Hart(x) = Re(F x) - Im(F x)`` is the orthonormal discrete Hartley transform (real,
symmetric, its own inverse) and ``F^-1 e^{-i phi} F`` is a real all-pass filter (phi is odd in
k for a real kernel). Indeed ``U^T (C x) = Hart(|lambda| F x) = |lambda| V^T x``. Singular values at
or below ``rcond * max(s)`` count as zero in ``pinv`` and the spectral solves: the regularisation
threshold of this ill-conditioned operator.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import SVDOperator


def hartley(x: Tensor) -> Tensor:
    """Orthonormal 2-D discrete Hartley transform over the last two dimensions (an involution)."""
    X = torch.fft.fft2(x, norm="ortho")
    return X.real - X.imag


class CircularConvolution(SVDOperator):
    def __init__(self, kernel: Tensor, image_size: tuple[int, int], rcond: float = 1e-3):
        super().__init__()
        if kernel.ndim != 4 or kernel.shape[1] != 1:
            raise ValueError(f"kernel must be (B, 1, kh, kw), got {tuple(kernel.shape)}")
        h, w = image_size
        kh, kw = kernel.shape[-2:]
        # Place the kernel with its centre at pixel (0, 0) of the H x W torus; a kernel larger than
        # the image wraps around (summed modulo the image size), as periodic convolution implies.
        rows = (torch.arange(kh) - kh // 2) % h
        cols = (torch.arange(kw) - kw // 2) % w
        padded = torch.zeros(kernel.shape[0], 1, h * w, dtype=torch.float64)
        index = (rows[:, None] * w + cols[None, :]).reshape(-1)
        padded.index_add_(2, index, kernel.double().reshape(kernel.shape[0], 1, -1))
        padded = padded.reshape(kernel.shape[0], 1, h, w)
        lam = torch.fft.fft2(padded)
        mag = lam.abs()
        phase = torch.where(mag > 0, lam / torch.where(mag > 0, mag, 1), torch.ones_like(lam))
        # Complex responses are kept as real pairs: Module.to(dtype) would drop imaginary parts.
        self.register_buffer("lam_ri", torch.view_as_real(lam).contiguous())
        self.register_buffer("phase_ri", torch.view_as_real(phase).contiguous())
        self.register_buffer("mag", mag)
        self.rcond = rcond

    @staticmethod
    def _filter(x: Tensor, response_ri: Tensor, conj: bool = False) -> Tensor:
        response = torch.view_as_complex(response_ri.double().contiguous())
        if conj:
            response = response.conj()
        out = torch.fft.ifft2(torch.fft.fft2(x.double()) * response).real
        return out.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self._filter(x, self.lam_ri)

    def adjoint(self, y: Tensor) -> Tensor:
        return self._filter(y, self.lam_ri, conj=True)

    def vt(self, x: Tensor) -> Tensor:
        return hartley(x)

    def v(self, z: Tensor) -> Tensor:
        return hartley(z)

    def ut(self, y: Tensor) -> Tensor:
        return hartley(self._filter(y, self.phase_ri, conj=True))

    def u(self, z: Tensor) -> Tensor:
        return self._filter(hartley(z), self.phase_ri)

    def singular_values(self) -> Tensor:
        return self.mag


def gaussian_kernel(size: int = 61, std: float = 3.0) -> Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / std) ** 2)
    k = g[:, None] * g[None, :]
    return k / k.sum()


def motion_kernel(size: int, intensity: float, generator: torch.Generator, steps: int = 2000) -> Tensor:
    """A random camera-shake kernel: a random walk with inertia (jerkiness ``intensity`` in [0, 1]:
    0 a straight line, 1 an erratic path), drawn with bilinear splats on a ``size`` x ``size``
    grid, centred on its centre of mass and normalised to sum 1. Our own seeded generator in the
    spirit of Boracchi and Foi (2012) and of the ``motionblur`` package used by DPS; its kernels
    are not pixel-identical to that package's."""
    angle = torch.rand((), generator=generator, dtype=torch.float64) * 2 * math.pi
    velocity = torch.stack([torch.cos(angle), torch.sin(angle)])
    position = torch.zeros(2, dtype=torch.float64)
    points = []
    length = 0.6 * size  # path length in pixels
    step = length / steps
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


class _Deblur:
    rcond: float

    def operator(self, artifacts: dict[str, Tensor], image_shape: tuple[int, int, int]) -> CircularConvolution:
        return CircularConvolution(self._kernels(artifacts), tuple(image_shape[1:]), rcond=self.rcond)

    def _kernels(self, artifacts: dict[str, Tensor]) -> Tensor:
        kernel = artifacts["kernel"]
        return kernel if kernel.ndim == 4 else kernel[:, None]


class GaussianBlur(_Deblur):
    """Gaussian blur, ``size`` x ``size`` kernel of standard deviation ``std`` (DPS: 61, 3.0)."""

    def __init__(self, size: int = 61, std: float = 3.0, rcond: float = 1e-3):
        self.size, self.std, self.rcond = int(size), float(std), float(rcond)

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {"kernel": gaussian_kernel(self.size, self.std)[None].float()}


class UniformBlur(_Deblur):
    """Box blur, ``size`` x ``size`` (DDRM/RED-diff "deblur_uni": 9)."""

    def __init__(self, size: int = 9, rcond: float = 1e-3):
        self.size, self.rcond = int(size), float(rcond)

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {"kernel": torch.full((1, self.size, self.size), 1.0 / self.size**2)}


class MotionBlur(_Deblur):
    """Random motion blur, a new seeded kernel per image (DPS: 61 x 61, intensity 0.5)."""

    def __init__(self, size: int = 61, intensity: float = 0.5, rcond: float = 1e-3):
        self.size, self.intensity, self.rcond = int(size), float(intensity), float(rcond)

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {"kernel": motion_kernel(self.size, self.intensity, generator)[None].float()}
