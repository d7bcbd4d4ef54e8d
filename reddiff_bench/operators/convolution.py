"""Deblurring: a per-image kernel with one of two boundaries.

* ``circular`` (:class:`CircularConvolution`): the image is a torus; an exact real SVD, so every
  solver runs it.
* ``reflect`` (:class:`ReflectConvolution`): the image is mirrored at its border before the
  kernel slides over it, as DPS computes blurs (util/img_utils.py ``Blurkernel``:
  ``ReflectionPad2d`` then ``Conv2d``). Linear with an exact adjoint but no SVD: the solvers
  that run in the SVD basis refuse it.

``orientation``: ``convolution`` (``y = k * x``) or ``correlation`` (``y[i] = sum_u k[u] x[i + u]``,
what ``Conv2d`` computes, so DPS's); they differ by a 180-degree turn of the kernel.

Circular boundary convention: periodic (the image is treated as a torus), which is what FFT-based
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

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import LinearOperator, SVDOperator
from .kernels import dps_motion_kernel, gaussian_kernel, numpy_stream, random_walk_kernel


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


def reflect_index(n: int, pad: int) -> Tensor:
    """Indices of a length-``n`` axis mirrored by ``pad`` on each side (``ReflectionPad``: the
    border pixel is not repeated)."""
    i = torch.arange(-pad, n + pad).abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


class ReflectConvolution(LinearOperator):
    """``y = k (*) mirror(x)``: the image mirrored by half the kernel on each side, then the kernel
    slid over it (cross-correlation, so orientation ``correlation`` uses the kernel as given); the
    output has the image's size. The adjoint slides back and folds the mirrored border onto the
    pixels it copied. No SVD and no pseudo-inverse: the initial estimate is ``y`` itself."""

    svd_hint = "set task.degradation.boundary=circular for the solvers that need an SVD"

    def __init__(self, kernel: Tensor, image_size: tuple[int, int], orientation: str = "correlation"):
        super().__init__()
        if kernel.ndim != 4 or kernel.shape[1] != 1:
            raise ValueError(f"kernel must be (B, 1, kh, kw), got {tuple(kernel.shape)}")
        h, w = image_size
        kh, kw = kernel.shape[-2:]
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"the reflect boundary needs a kernel of odd sides, got {kh} x {kw}")
        if kh // 2 > h - 1 or kw // 2 > w - 1:
            raise ConfigError(f"a {kh} x {kw} kernel cannot mirror a {h} x {w} image (half the kernel must be "
                              f"smaller than the image): use larger images (dataset.size), a smaller kernel "
                              f"(task.degradation.size) or task.degradation.boundary=circular")
        weight = kernel if orientation == "correlation" else kernel.flip(-2, -1)
        self.register_buffer("weight", weight.clone())
        self.register_buffer("rows", reflect_index(h, kh // 2))
        self.register_buffer("cols", reflect_index(w, kw // 2))
        self.size = (h, w)

    def _weights(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        return self.weight.to(x.dtype).expand(b, 1, *self.weight.shape[-2:]).repeat_interleave(c, 0)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        mirrored = x.index_select(-2, self.rows).index_select(-1, self.cols)
        out = F.conv2d(mirrored.reshape(1, b * c, *mirrored.shape[-2:]), self._weights(x), groups=b * c)
        return out.reshape(b, c, *self.size)

    def adjoint(self, y: Tensor) -> Tensor:
        b, c = y.shape[:2]
        spread = F.conv_transpose2d(y.reshape(1, b * c, *y.shape[-2:]), self._weights(y), groups=b * c)
        spread = spread.reshape(b, c, *spread.shape[-2:])
        folded = y.new_zeros(b, c, self.size[0], spread.shape[-1]).index_add(-2, self.rows, spread)
        return y.new_zeros(b, c, *self.size).index_add(-1, self.cols, folded)

    def init_estimate(self, y: Tensor) -> Tensor:
        return y.clone()


class _Deblur:
    """A blur degradation: the kernel is the artifact; ``boundary`` and ``orientation`` say how
    it is applied (module docstring)."""

    BOUNDARIES = ("circular", "reflect")
    ORIENTATIONS = ("convolution", "correlation")
    rcond: float
    boundary: str = "circular"
    orientation: str = "convolution"

    def _set_application(self, boundary: str, orientation: str) -> None:
        if boundary not in self.BOUNDARIES:
            raise ValueError(f"blur boundary must be one of {self.BOUNDARIES}, got {boundary!r}")
        if orientation not in self.ORIENTATIONS:
            raise ValueError(f"blur orientation must be one of {self.ORIENTATIONS}, got {orientation!r}")
        self.boundary, self.orientation = boundary, orientation

    def operator(self, artifacts: dict[str, Tensor], image_shape: tuple[int, int, int]):
        kernels = self._kernels(artifacts)
        if self.boundary == "reflect":
            return ReflectConvolution(kernels, tuple(image_shape[1:]), self.orientation)
        if self.orientation == "correlation":  # odd sides: the turn keeps the centre in place
            kernels = kernels.flip(-2, -1)
        return CircularConvolution(kernels, tuple(image_shape[1:]), rcond=self.rcond)

    def _kernels(self, artifacts: dict[str, Tensor]) -> Tensor:
        kernel = artifacts["kernel"]
        return kernel if kernel.ndim == 4 else kernel[:, None]


class GaussianBlur(_Deblur):
    """Gaussian blur, ``size`` x ``size`` kernel of standard deviation ``std`` (DPS: 61, 3.0,
    truncated at 4 std as scipy truncates it)."""

    def __init__(self, size: int = 61, std: float = 3.0, rcond: float = 1e-3, truncate: float | None = None,
                 boundary: str = "circular", orientation: str = "convolution"):
        self.size, self.std, self.rcond = int(size), float(std), float(rcond)
        self.truncate = None if truncate is None else float(truncate)
        self._set_application(boundary, orientation)

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {"kernel": gaussian_kernel(self.size, self.std, self.truncate)[None].float()}


class UniformBlur(_Deblur):
    """Box blur, ``size`` x ``size`` (DDRM/RED-diff "deblur_uni": 9)."""

    def __init__(self, size: int = 9, rcond: float = 1e-3, boundary: str = "circular"):
        self.size, self.rcond = int(size), float(rcond)
        self._set_application(boundary, "convolution")

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {"kernel": torch.full((1, self.size, self.size), 1.0 / self.size**2)}


class MotionBlur(_Deblur):
    """Random motion blur, a new seeded kernel per image (DPS: 61 x 61, intensity 0.5).

    ``kernel``: ``dps``, the camera-shake kernels DPS draws (:func:`.kernels.dps_motion_kernel`),
    or ``random_walk``, the project's earlier generator (:func:`.kernels.random_walk_kernel`)."""

    KERNELS = ("dps", "random_walk")

    def __init__(self, size: int = 61, intensity: float = 0.5, rcond: float = 1e-3, kernel: str = "dps",
                 boundary: str = "circular", orientation: str = "convolution"):
        if kernel not in self.KERNELS:
            raise ValueError(f"motion kernel must be one of {self.KERNELS}, got {kernel!r}")
        self.size, self.intensity, self.rcond, self.kernel = int(size), float(intensity), float(rcond), kernel
        self._set_application(boundary, orientation)

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        if self.kernel == "dps":
            return {"kernel": dps_motion_kernel(self.size, self.intensity, numpy_stream(generator))[None].float()}
        return {"kernel": random_walk_kernel(self.size, self.intensity, generator)[None].float()}
