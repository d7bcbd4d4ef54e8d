"""Separable linear operators ``Y_c = M_h X_c M_w^T`` per colour channel, with an exact SVD.

The SVD of the Kronecker product follows from the SVDs of the two 1-D matrices:
``M_h = U_h S_h V_h^T`` and ``M_w = U_w S_w V_w^T`` give ``A = (U_h x U_w)(S_h x S_w)(V_h x V_w)^T``.
Spectral coefficients of x are ``V_h^T X V_w`` (H x W); the measured ones are its top-left
``h x w`` block, paired with the singular values ``s_h[i] s_w[j]``. Block averaging, bicubic
downsampling and separable blurs are all instances.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import SVDOperator


class SeparableOperator(SVDOperator):
    def __init__(self, m_h: Tensor, m_w: Tensor, rcond: float = 1e-6):
        super().__init__()
        m_h = torch.as_tensor(m_h, dtype=torch.float64)
        m_w = torch.as_tensor(m_w, dtype=torch.float64)
        if m_h.shape[0] > m_h.shape[1] or m_w.shape[0] > m_w.shape[1]:
            raise ValueError("separable operators map H x W to h x w with h <= H and w <= W")
        self.rcond = rcond
        for name, m in (("h", m_h), ("w", m_w)):
            u, s, vh = torch.linalg.svd(m, full_matrices=True)
            # float64 buffers (cast to the input's dtype on use): V and U stay orthogonal to
            # float64 precision for exact references, at no cost for small 1-D matrices.
            self.register_buffer(f"m_{name}", m)
            self.register_buffer(f"u_{name}", u)
            self.register_buffer(f"s_{name}", s)
            self.register_buffer(f"v_{name}", vh.T.contiguous())
        self.out_h, self.out_w = m_h.shape[0], m_w.shape[0]

    @staticmethod
    def _sandwich(left: Tensor, x: Tensor, right_t: Tensor) -> Tensor:
        return left.to(x.dtype) @ x @ right_t.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self._sandwich(self.m_h, x, self.m_w.T)

    def adjoint(self, y: Tensor) -> Tensor:
        return self._sandwich(self.m_h.T, y, self.m_w)

    def vt(self, x: Tensor) -> Tensor:
        return self._sandwich(self.v_h.T, x, self.v_w)

    def v(self, z: Tensor) -> Tensor:
        return self._sandwich(self.v_h, z, self.v_w.T)

    def ut(self, y: Tensor) -> Tensor:
        return self._sandwich(self.u_h.T, y, self.u_w)

    def u(self, z: Tensor) -> Tensor:
        return self._sandwich(self.u_h, z, self.u_w.T)

    def singular_values(self) -> Tensor:
        return self.s_h[:, None] * self.s_w[None, :]

    def select(self, z: Tensor) -> Tensor:
        return z[..., : self.out_h, : self.out_w]

    def embed(self, z: Tensor) -> Tensor:
        pad_h = self.v_h.shape[0] - self.out_h
        pad_w = self.v_w.shape[0] - self.out_w
        return torch.nn.functional.pad(z, (0, pad_w, 0, pad_h))


def block_average_matrix(n: int, factor: int) -> Tensor:
    """The 1-D block-averaging matrix (n // factor, n): row i averages entries i*f .. i*f+f-1."""
    if n % factor:
        raise ValueError(f"image side {n} is not divisible by the super-resolution factor {factor}")
    m = torch.zeros(n // factor, n, dtype=torch.float64)
    for i in range(n // factor):
        m[i, i * factor : (i + 1) * factor] = 1.0 / factor
    return m


class BlockAverageSR:
    """Super-resolution by ``factor`` x ``factor`` block averaging (RED-diff's "sr4" for factor 4)."""

    def __init__(self, factor: int = 4):
        if factor < 2:
            raise ValueError(f"super-resolution factor must be >= 2, got {factor}")
        self.factor = int(factor)

    def sample_artifacts(self, image_shape: tuple[int, int, int], generator: torch.Generator) -> dict[str, Tensor]:
        return {}

    def operator(self, artifacts: dict[str, Tensor], image_shape: tuple[int, int, int]) -> SeparableOperator:
        _, h, w = image_shape
        return SeparableOperator(block_average_matrix(h, self.factor), block_average_matrix(w, self.factor))


def cubic(t: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic convolution kernel (a = -0.5: the bicubic of Matlab/PIL)."""
    t = t.abs()
    return torch.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                       torch.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, torch.zeros_like(t)))


def bicubic_matrix(n: int, factor: int, a: float = -0.5) -> Tensor:
    """1-D antialiased bicubic downsampling (n // factor, n): output i sits at input coordinate
    (i + 0.5) f - 0.5; weights cubic((j - centre) / f) / f over the 4f nearest inputs, boundary by
    reflection (the input is mirrored about its edges), rows normalised to sum 1."""
    if n % factor:
        raise ValueError(f"image side {n} is not divisible by the super-resolution factor {factor}")
    m = torch.zeros(n // factor, n, dtype=torch.float64)
    for i in range(n // factor):
        centre = (i + 0.5) * factor - 0.5
        for j in range(int(centre - 2 * factor) - 1, int(centre + 2 * factor) + 2):
            w = cubic(torch.tensor((j - centre) / factor, dtype=torch.float64), a)
            if w == 0:
                continue
            jj = j
            while jj < 0 or jj >= n:  # mirror about the edges (half-sample symmetric)
                jj = -jj - 1 if jj < 0 else 2 * n - jj - 1
            m[i, jj] += w
    return m / m.sum(1, keepdim=True)


class BicubicSR:
    """Super-resolution by antialiased bicubic downsampling (a = -0.5), exact separable SVD."""

    def __init__(self, factor: int = 4, a: float = -0.5):
        if factor < 2:
            raise ValueError(f"super-resolution factor must be >= 2, got {factor}")
        self.factor, self.a = int(factor), float(a)

    def sample_artifacts(self, image_shape: tuple[int, int, int], generator: torch.Generator) -> dict[str, Tensor]:
        return {}

    def operator(self, artifacts: dict[str, Tensor], image_shape: tuple[int, int, int]) -> SeparableOperator:
        _, h, w = image_shape
        return SeparableOperator(bicubic_matrix(h, self.factor, self.a), bicubic_matrix(w, self.factor, self.a))
