"""Composition of two degradations, ``y = then(first(x))`` (e.g. super-resolution then
inpainting of the low-resolution image).

Linear compositions get the exact adjoint and a pseudo-inverse computed by conjugate gradients
on the normal equations of the second kind (``A A^T z = y``, ``x = A^T z``: the minimum-norm
least-squares solution, restricted to the measured entries); no SVD, so DDRM and PiGDM refuse
them."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LinearOperator, Operator


class ComposedOperator(LinearOperator):
    def __init__(self, first: Operator, then: Operator, cg_iterations: int = 200, cg_tolerance: float = 1e-10):
        super().__init__()
        self.first, self.then = first, then
        self.linear = bool(first.linear and then.linear)
        self.cg_iterations, self.cg_tolerance = cg_iterations, cg_tolerance

    def forward(self, x: Tensor) -> Tensor:
        return self.then(self.first(x))

    def y_support(self, y: Tensor) -> Tensor | None:
        return self.then.y_support(y)

    def adjoint(self, y: Tensor) -> Tensor:
        self._require_linear()
        return self.first.adjoint(self.then.adjoint(y))

    def _require_linear(self) -> None:
        if not self.linear:
            raise ValueError("a composition with a nonlinear operator has no adjoint or pseudo-inverse")

    def pinv(self, y: Tensor) -> Tensor:
        """Minimum-norm least squares by CG on ``A A^T z = P y`` (P: the measured entries), per image."""
        self._require_linear()
        support = self.y_support(y)
        b = y if support is None else y * support
        z = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        dims = tuple(range(1, b.ndim))
        rs = (r * r).sum(dims, keepdim=True)
        scale = rs.clamp_min(torch.finfo(b.dtype).tiny)
        for _ in range(self.cg_iterations):
            ap = self.forward(self.adjoint(p))
            alpha = rs / (p * ap).sum(dims, keepdim=True).clamp_min(torch.finfo(b.dtype).tiny)
            z = z + alpha * p
            r = r - alpha * ap
            rs_new = (r * r).sum(dims, keepdim=True)
            if bool((rs_new <= self.cg_tolerance**2 * scale).all()):
                break
            p = r + (rs_new / rs.clamp_min(torch.finfo(b.dtype).tiny)) * p
            rs = rs_new
        return self.adjoint(z)

    def init_estimate(self, y: Tensor) -> Tensor:
        return self.pinv(y) if self.linear else self.first.init_estimate(self.then.init_estimate(y))


class Compose:
    """``then`` applied to the output of ``first``; artifacts are kept apart by prefixes."""

    def __init__(self, first, then):
        self.first, self.then = first, then

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        inner = self.first.sample_artifacts(image_shape, generator)
        probe = self.first.operator({k: v[None] for k, v in inner.items()}, image_shape)
        with torch.no_grad():
            mid_shape = tuple(probe(torch.zeros(1, *image_shape)).shape[1:])
        outer = self.then.sample_artifacts(mid_shape, generator)
        return {**{f"first.{k}": v for k, v in inner.items()}, **{f"then.{k}": v for k, v in outer.items()}}

    def operator(self, artifacts, image_shape) -> ComposedOperator:
        inner = {k[len("first."):]: v for k, v in artifacts.items() if k.startswith("first.")}
        outer = {k[len("then."):]: v for k, v in artifacts.items() if k.startswith("then.")}
        first = self.first.operator(inner, image_shape)
        with torch.no_grad():
            mid_shape = tuple(first(torch.zeros(1, *image_shape)).shape[1:])
        return ComposedOperator(first, self.then.operator(outer, mid_shape))
