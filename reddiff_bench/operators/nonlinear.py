"""Nonlinear forward models. None has a pseudo-inverse; each documents the initial estimate that
solvers starting from a pseudo-inverse (RED-Diff's init=pinv, the pinv baseline) use instead."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Operator


class HDROperator(Operator):
    """High dynamic range: ``y = clip(2 x, -1, 1)``. Initial estimate ``y / 2`` (exact where
    unclipped)."""

    def forward(self, x: Tensor) -> Tensor:
        return (2 * x).clamp(-1, 1)

    def init_estimate(self, y: Tensor) -> Tensor:
        return y / 2


class PhaseRetrievalOperator(Operator):
    """Fourier phase retrieval: ``y = |F(pad(z))|`` per channel, orthonormal FFT.

    The project's definition (the defaults): ``z = (x + 1) / 2``, the nonnegative image, zero-padded
    to ``oversampling`` times its side (2: twice the side, the image centred), FFT unshifted.
    DPS's (guided_diffusion/measurements.py ``PhaseRetrievalOperator``): ``signed=True`` (``z = x``,
    so ``x`` and ``-x`` give the same ``y``), ``pad=64`` pixels on each side whatever the image size
    (``int(oversample / 8 * 256)``), ``centered=True`` (the centred FFT of util/fastmri_utils.py
    ``fft2c_new``: ifftshift, FFT, fftshift). RED-diff's is DPS's (utils/degredations.py
    ``PhaseRetrievalOperator``, the same code) with its initial estimate.

    No pseudo-inverse exists. ``init``: ``zeros`` (mid-grey), or ``inverse_magnitude``, RED-diff's
    ``H_pinv``: the magnitude of the (centred, if ``centered``) inverse FFT of ``y``, cropped to the
    image (what RED-Diff starts from with ``init=pinv``)."""

    INITS = ("zeros", "inverse_magnitude")

    def __init__(self, oversampling: float = 2.0, pad: int | None = None, signed: bool = False,
                 centered: bool = False, init: str = "zeros"):
        super().__init__()
        if init not in self.INITS:
            raise ValueError(f"phase retrieval init must be one of {self.INITS}, got {init!r}")
        self.init = init
        if oversampling < 1:
            raise ValueError(f"oversampling must be >= 1, got {oversampling}")
        if pad is not None and pad < 0:
            raise ValueError(f"pad must be >= 0 pixels, got {pad}")
        self.oversampling = float(oversampling)
        self.pad, self.signed, self.centered = (None if pad is None else int(pad)), bool(signed), bool(centered)

    def _pad(self, h: int, w: int) -> tuple[int, int, int, int]:
        if self.pad is not None:
            return (self.pad,) * 4
        ph, pw = round(h * (self.oversampling - 1)), round(w * (self.oversampling - 1))
        return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)

    def forward(self, x: Tensor) -> Tensor:
        padded = F.pad(x if self.signed else (x + 1) / 2, self._pad(*x.shape[-2:]))
        if not self.centered:
            return torch.fft.fft2(padded, norm="ortho").abs()
        spectrum = torch.fft.fft2(torch.fft.ifftshift(padded, dim=(-2, -1)), norm="ortho")
        return torch.fft.fftshift(spectrum, dim=(-2, -1)).abs()

    def init_estimate(self, y: Tensor) -> Tensor:
        if self.pad is not None:
            h, w = y.shape[-2] - 2 * self.pad, y.shape[-1] - 2 * self.pad
        else:
            h, w = round(y.shape[-2] / self.oversampling), round(y.shape[-1] / self.oversampling)
        if self.init == "zeros":
            return torch.zeros(y.shape[0], y.shape[1], h, w, device=y.device, dtype=y.dtype)
        if self.centered:
            back = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(y, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
        else:
            back = torch.fft.ifft2(y, norm="ortho")
        left, _, top, _ = self._pad(h, w)
        return back.abs()[..., top : top + h, left : left + w].to(y.dtype)


# IJG base quantisation tables (ITU-T T.81, Annex K).
_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float64)
_CHROMA = torch.tensor([
    [17, 18, 24, 47, 99, 99, 99, 99], [18, 21, 26, 66, 99, 99, 99, 99], [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99]] + [[99] * 8] * 4, dtype=torch.float64)
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                             dtype=torch.float64)


def quality_tables(quality: int) -> tuple[Tensor, Tensor]:
    """IJG scaling of the base tables to ``quality`` in 1..100."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return tuple(((t * scale + 50) / 100).floor().clamp(1, 255) for t in (_LUMA, _CHROMA))


def _dct_matrix(n: int = 8) -> Tensor:
    k = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


def soft_round(x: Tensor) -> Tensor:
    """Rounding with a useful gradient: ``round(x) + (x - round(x))^3`` (Shin and Song, 2017)."""
    r = torch.round(x)
    return r + (x - r) ** 3


class JPEGOperator(Operator):
    """Differentiable JPEG at ``quality``: RGB -> YCbCr (JFIF), 8 x 8 block DCT, quantisation with
    the IJG tables (soft rounding), dequantisation, inverse DCT, back to RGB, clipped to the pixel
    range. No chroma subsampling (4:4:4). Image sides must be multiples of 8. Initial estimate:
    the decoded JPEG ``y`` itself."""

    def __init__(self, quality: int = 10):
        super().__init__()
        luma, chroma = quality_tables(int(quality))
        self.quality = int(quality)
        self.register_buffer("tables", torch.stack([luma, chroma, chroma]))
        self.register_buffer("dct", _dct_matrix())
        self.register_buffer("rgb2ycc", _RGB_TO_YCBCR.clone())

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if c != 3 or h % 8 or w % 8:
            raise ValueError(f"JPEG needs RGB images with sides divisible by 8, got {tuple(x.shape[1:])}")
        dt = x.dtype
        pixels = (x + 1) * 127.5
        ycc = torch.einsum("ij,bjhw->bihw", self.rgb2ycc.to(dt), pixels)
        ycc = ycc + torch.tensor([-128.0, 0.0, 0.0], dtype=dt, device=x.device).view(1, 3, 1, 1)
        blocks = ycc.reshape(b, 3, h // 8, 8, w // 8, 8).transpose(3, 4)  # (b, 3, H/8, W/8, 8, 8)
        d = self.dct.to(dt)
        coeffs = d @ blocks @ d.T
        q = self.tables.to(dt)[None, :, None, None]
        coeffs = soft_round(coeffs / q) * q
        blocks = d.T @ coeffs @ d
        ycc = blocks.transpose(3, 4).reshape(b, 3, h, w)
        ycc = ycc + torch.tensor([128.0, 0.0, 0.0], dtype=dt, device=x.device).view(1, 3, 1, 1)
        rgb = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.rgb2ycc).to(dt), ycc)
        return (rgb.clamp(0, 255) / 127.5) - 1

    def init_estimate(self, y: Tensor) -> Tensor:
        return y


# RED-diff's colour transforms (utils/jpeg_torch.py torch_rgb2ycbcr / torch_ycbcr2rgb), as it writes them
_REDDIFF_RGB_TO_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.1687, -0.3313, 0.5], [0.5, -0.4187, -0.0813]])
_REDDIFF_YCC_TO_RGB = torch.tensor([[1.0, -3.68199903e-05, 1.40198758e00], [1.0, -3.44113281e-01, -7.14103821e-01],
                                    [1.0, 1.77197812e00, -1.34583413e-04]])


class ReddiffJPEGOperator(Operator):
    """RED-diff's JPEG as shipped (NVlabs/RED-diff utils/jpeg_torch.py
    ``jpeg_decode(jpeg_encode(x, quality), quality)``, the ``jpeg<q>`` degradation): RGB -> YCbCr
    with its own rounded coefficients, chroma 4:2:0 by keeping every second pixel (no averaging),
    8 x 8 orthonormal DCT, quantisation with the IJG tables by hard rounding, back, chroma upsampled
    by repeating each pixel 2 x 2, no clipping. Hard rounding has zero gradient: a data term
    through this operator gives no gradient (RED-Diff on it only denoises). Sides must be
    multiples of 16. Initial estimate: ``y`` (RED-diff's ``H_pinv``)."""

    def __init__(self, quality: int = 20):
        super().__init__()
        luma, chroma = quality_tables(int(quality))
        self.quality = int(quality)
        self.register_buffer("tables", torch.stack([luma, chroma]).float())
        self.register_buffer("dct", _dct_matrix().float())
        self.register_buffer("rgb2ycc", _REDDIFF_RGB_TO_YCC.clone())
        self.register_buffer("ycc2rgb", _REDDIFF_YCC_TO_RGB.clone())

    def _code(self, planes: Tensor, table: Tensor) -> Tensor:
        """Blockwise DCT, quantisation by hard rounding, dequantisation, inverse DCT."""
        b, c, h, w = planes.shape
        blocks = planes.reshape(b, c, h // 8, 8, w // 8, 8).transpose(3, 4)
        d = self.dct.to(planes.dtype)
        q = table.to(planes.dtype)
        coeffs = torch.round((d @ blocks @ d.T) / q) * q
        return (d.T @ coeffs @ d).transpose(3, 4).reshape(b, c, h, w)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if c != 3 or h % 16 or w % 16:
            raise ValueError(f"RED-diff's JPEG needs RGB images with sides divisible by 16, got {tuple(x.shape[1:])}")
        pixels = (x + 1) / 2 * 255
        ycc = torch.einsum("ij,bjhw->bihw", self.rgb2ycc.to(x.dtype), pixels)  # Cb, Cr centred on 0
        luma = self._code(ycc[:, :1] - 128, self.tables[0]) + 128
        chroma = self._code(ycc[:, 1:, ::2, ::2], self.tables[1])
        chroma = chroma.repeat_interleave(2, -2).repeat_interleave(2, -1)
        rgb = torch.einsum("ij,bjhw->bihw", self.ycc2rgb.to(x.dtype), torch.cat([luma, chroma], 1))
        return rgb / 255 * 2 - 1

    def init_estimate(self, y: Tensor) -> Tensor:
        return y


class HDR:
    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {}

    def operator(self, artifacts, image_shape) -> HDROperator:
        return HDROperator()


class PhaseRetrieval:
    """Phase retrieval; the arguments are :class:`PhaseRetrievalOperator`'s."""

    def __init__(self, oversampling: float = 2.0, pad: int | None = None, signed: bool = False,
                 centered: bool = False, init: str = "zeros"):
        self.options = dict(oversampling=float(oversampling), pad=pad, signed=bool(signed), centered=bool(centered),
                            init=init)
        PhaseRetrievalOperator(**self.options)  # validate early

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {}

    def operator(self, artifacts, image_shape) -> PhaseRetrievalOperator:
        return PhaseRetrievalOperator(**self.options)


class JPEG:
    """JPEG at ``quality``: ``implementation`` ``project`` (:class:`JPEGOperator`, differentiable)
    or ``reddiff`` (:class:`ReddiffJPEGOperator`, RED-diff's as shipped)."""

    IMPLEMENTATIONS = ("project", "reddiff")

    def __init__(self, quality: int = 10, implementation: str = "project"):
        if implementation not in self.IMPLEMENTATIONS:
            raise ValueError(f"JPEG implementation must be one of {self.IMPLEMENTATIONS}, got {implementation!r}")
        self.quality, self.implementation = int(quality), implementation
        quality_tables(self.quality)  # validate early

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {}

    def operator(self, artifacts, image_shape) -> Operator:
        if self.implementation == "reddiff":
            return ReddiffJPEGOperator(self.quality)
        return JPEGOperator(self.quality)
