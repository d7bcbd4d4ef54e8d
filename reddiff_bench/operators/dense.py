"""A dense matrix operator on vectors (B, d), with its SVD: the MCGdiff/TMPD benchmark's
``y = A x + sigma_y e`` with ``A`` Gaussian (d_y x d) and its singular values replaced by sorted
U(0, 1) draws (Cardoso et al. 2024, Sec. 5)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import SVDOperator


class DenseOperator(SVDOperator):
    def __init__(self, A: Tensor):
        super().__init__()
        A = torch.as_tensor(A, dtype=torch.float64)
        if A.ndim == 2:
            A = A[None]
        if A.shape[1] > A.shape[2]:
            raise ValueError(f"dense operators map R^d to R^m with m <= d, got A of shape {tuple(A.shape[1:])}")
        u, s, vh = torch.linalg.svd(A, full_matrices=True)
        self.register_buffer("A", A)
        self.register_buffer("u_", u)
        self.register_buffer("s_", s)
        self.register_buffer("v_", vh.transpose(-1, -2).contiguous())
        self.m = A.shape[1]

    @staticmethod
    def _mv(M: Tensor, x: Tensor) -> Tensor:
        if M.shape[0] == 1:  # one matrix for the whole batch (e.g. samples of one problem): one GEMM
            return x @ M[0].T.to(x.dtype)
        return (M.to(x.dtype) @ x[..., None])[..., 0]

    def forward(self, x: Tensor) -> Tensor:
        return self._mv(self.A, x)

    def adjoint(self, y: Tensor) -> Tensor:
        return self._mv(self.A.transpose(-1, -2), y)

    def vt(self, x: Tensor) -> Tensor:
        return self._mv(self.v_.transpose(-1, -2), x)

    def v(self, z: Tensor) -> Tensor:
        return self._mv(self.v_, z)

    def ut(self, y: Tensor) -> Tensor:
        return self._mv(self.u_.transpose(-1, -2), y)

    def u(self, z: Tensor) -> Tensor:
        return self._mv(self.u_, z)

    def singular_values(self) -> Tensor:
        return self.s_

    def select(self, z: Tensor) -> Tensor:
        return z[..., : self.m]

    def embed(self, z: Tensor) -> Tensor:
        return torch.nn.functional.pad(z, (0, self.v_.shape[-1] - self.m))


class RandomMatrix:
    """Per-problem random ``A`` (d_y x d): Gaussian entries, singular values replaced by sorted
    (descending) U(0, 1) draws, all from the problem's generator."""

    def __init__(self, d_y: int = 1):
        if d_y < 1:
            raise ValueError(f"d_y must be >= 1, got {d_y}")
        self.d_y = int(d_y)

    def sample_artifacts(self, image_shape: tuple[int, ...], generator: torch.Generator) -> dict[str, Tensor]:
        (d,) = image_shape
        a = torch.randn(self.d_y, d, generator=generator, dtype=torch.float64)
        u, _, vh = torch.linalg.svd(a, full_matrices=False)
        s = torch.rand(self.d_y, generator=generator, dtype=torch.float64).sort(descending=True).values
        return {"A": (u * s) @ vh}

    def operator(self, artifacts: dict[str, Tensor], image_shape: tuple[int, ...]) -> DenseOperator:
        return DenseOperator(artifacts["A"])
