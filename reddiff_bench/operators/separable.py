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
