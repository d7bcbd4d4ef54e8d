"""The operator contract (forward models ``y = A(x)``), after deepinv's Physics hierarchy.

* :class:`Operator`: any differentiable forward model; ``init_estimate`` is the documented
  starting point for solvers that start from a pseudo-inverse.
* :class:`LinearOperator`: adds the exact ``adjoint`` and ``pinv``.
* :class:`SVDOperator`: a linear operator given by its singular value decomposition
  ``A = U diag(s) V^T``. Spectral coefficients are kept in tensors shaped like ``x``
  (``vt(x)``) and like ``y`` (``ut(y)``); ``select`` takes the coefficients of ``V^T x`` that
  are paired with a singular value (one per measurement), ``embed`` puts them back (zeros
  elsewhere), and ``spectrum`` gives the singular values with the mask of the nonzero ones.
  Solvers that work in the spectral domain (DDRM, PiGDM, DDNM, MCGdiff, and DiffPIR's exact data
  step) use these parts.

Operators hold per-image artifacts (masks, kernels) with a leading batch dimension of size B or 1
(broadcast), never draw random numbers themselves, and follow their inputs' device and dtype.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor


class Operator(torch.nn.Module):
    """A forward model ``y = A(x)`` on batches of images (B, C, H, W)."""

    linear: bool = False

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def y_support(self, y: Tensor) -> Tensor | None:
        """A mask (broadcastable to ``y``) of the entries of ``y`` that carry a measurement, or None
        when all do. Entries outside the support are structurally zero (e.g. missing pixels) and
        receive no noise."""
        return None

    def num_measurements(self, y: Tensor) -> Tensor:
        """Number of real measurements per image (B,), as float."""
        support = self.y_support(y)
        per_image = y[0].numel()
        if support is None:
            return torch.full((y.shape[0],), float(per_image), device=y.device)
        return torch.broadcast_to(support, y.shape).reshape(y.shape[0], -1).sum(-1).float()

    def init_estimate(self, y: Tensor) -> Tensor:
        """The starting point for solvers that start from a pseudo-inverse."""
        raise NotImplementedError(f"{type(self).__name__} defines no initial estimate")


class LinearOperator(Operator):
    linear = True

    def adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def pinv(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def init_estimate(self, y: Tensor) -> Tensor:
        return self.pinv(y)


class SVDOperator(LinearOperator):
    """A linear operator given by its SVD; subclasses provide the four bases and ``singular_values``.

    ``rcond``: singular values at or below ``rcond * max(s)`` count as zero in ``pinv`` and in the
    spectral solves (a regularisation threshold for ill-conditioned operators such as blurs).
    """

    rcond: float = 1e-6

    def vt(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def v(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def ut(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def u(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def singular_values(self) -> Tensor:
        """Singular values, shaped to broadcast against ``ut(y)``."""
        raise NotImplementedError

    def select(self, z: Tensor) -> Tensor:
        """x-shaped spectral coefficients -> the y-shaped ones paired with singular values."""
        return z

    def embed(self, z: Tensor) -> Tensor:
        """Inverse of :meth:`select` on its range: y-shaped coefficients -> x-shaped, zeros elsewhere."""
        return z

    def _nonzero(self, s: Tensor) -> Tensor:
        smax = s.abs().amax()
        return s.abs() > self.rcond * smax.clamp_min(torch.finfo(s.dtype).tiny)

    def _s(self, like: Tensor) -> Tensor:
        return self.singular_values().to(like.dtype)

    def spectrum(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The singular values broadcast to the spectral coefficients ``like`` (``ut(y)``), and the
        mask of those that count as nonzero (above ``rcond`` times the largest)."""
        s = self._s(like).expand_as(like)
        return s, self._nonzero(s)

    def forward(self, x: Tensor) -> Tensor:
        return self.u(self._s(x) * self.select(self.vt(x)))

    def adjoint(self, y: Tensor) -> Tensor:
        return self.v(self.embed(self._s(y) * self.ut(y)))

    def pinv(self, y: Tensor) -> Tensor:
        s = self._s(y)
        nz = self._nonzero(s)
        return self.v(self.embed(torch.where(nz, self.ut(y) / torch.where(nz, s, 1), 0)))

    def gram_solve(self, r: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
        """``(a A A^T + b I)^+ r`` on the measurement space, through the SVD; entries whose
        denominator vanishes (no singular value and b = 0) are set to zero (pseudo-inverse).
        ``a`` and ``b`` are scalars or per-image tensors (B,)."""
        zr = self.ut(r)
        s = self._s(zr)
        a = torch.as_tensor(a, dtype=zr.dtype, device=zr.device).reshape(-1, *([1] * (zr.ndim - 1)))
        b = torch.as_tensor(b, dtype=zr.dtype, device=zr.device).reshape(-1, *([1] * (zr.ndim - 1)))
        s2 = torch.where(self._nonzero(s), s, 0) ** 2
        denom = a * s2 + b
        ok = denom > 0
        return self.u(torch.where(ok, zr / torch.where(ok, denom, 1), 0))


def operator_matrix(operator: Operator, image_shape: tuple[int, ...], dtype=torch.float64) -> Tensor:
    """The dense matrix (m, d) of a linear operator built for ONE image, rows restricted to the
    measurement support. Meant for small images (exact posteriors, tests)."""
    if not operator.linear:
        raise ValueError(f"{type(operator).__name__} is not linear: it has no matrix")
    d = int(torch.tensor(image_shape).prod())
    basis = torch.eye(d, dtype=dtype).reshape(d, *image_shape)
    with torch.no_grad():
        op = copy.deepcopy(operator).cpu().to(dtype)
        cols = op(basis)  # (d, *y_shape)
        support = op.y_support(cols[:1])
        A = cols.reshape(d, -1).T
        if support is not None:
            keep = torch.broadcast_to(support, cols[:1].shape).reshape(-1) > 0
            A = A[keep]
    return A


def support_values(operator: Operator, y: Tensor) -> Tensor:
    """The entries of ONE image's measurement ``y`` (1, ...) that carry data, flattened."""
    support = operator.y_support(y)
    flat = y.reshape(-1)
    if support is None:
        return flat
    return flat[torch.broadcast_to(support, y.shape).reshape(-1) > 0]
