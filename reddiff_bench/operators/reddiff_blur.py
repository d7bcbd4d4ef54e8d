"""RED-diff's deblurring operators, as its code builds them and as it meant them.

NVlabs/RED-diff (66482f2) ``utils/degredations.py``: ``build_one_degredation_model`` makes
``deblur_uni`` from a 9-tap box (1/9 each) and ``deblur_gauss`` from 5 taps of a Gaussian of
standard deviation 25 (``pdf(-2..2, 25)``, normalised: practically a 5-tap box; a 13-tap kernel is
built on the line before and never used). ``Deblurring`` (DDRM's class) blurs rows and columns
with one 1-D matrix ``H_small`` and works in its SVD. What it computes differs from that
description in three ways, each reproduced by ``as_shipped=True`` and removed by ``False``:

1. **Taps.** ``H_small[i, j] = k[j - i + K // 2]`` for ``j`` in ``range(i - K // 2, i + K // 2)``:
   the last tap is never used (8 of 9, 4 of 5), so the blur is off-centre by half a pixel and its
   gain is 8/9 (box) or 0.80 (Gaussian) per axis. Intended: all ``K`` taps, centred.
2. **Threshold.** 1-D singular values below 3e-2 are set to zero, in the forward operator too,
   not only in its pseudo-inverse. Intended: the exact matrix (``rcond`` thresholds the solves).
3. **Ordering.** ``Vt`` returns coefficients interleaved pixel-mode by channel (mode ``p`` of
   channel ``c`` at ``3p + c``), while ``singulars()`` concatenates the per-channel values
   (``_singulars.repeat(1, 3)``), so mode ``p`` of channel ``c`` is scaled by the singular value
   of entry ``(3p + c) mod HW`` of the sorted list: another value for every mode but the first,
   and a different one per channel (a grey image comes out coloured). Intended: mode ``p`` gets
   its own singular value in every channel.

The boundary is zero (the image is not extended). Both versions are exact SVD operators: the
shipped one is ``U diag(g) V^T`` with the permuted gains ``g`` on RED-diff's own bases (the same
float32 LAPACK SVD of ``H_small`` that RED-diff computes, so that the modes with zeroed or tied
values match its), the intended one the separable matrix itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .separable import SeparableOperator

ZERO = 3e-2  # Deblurring.__init__: singular values of H_small below it are set to 0


def reddiff_kernel(name: str) -> Tensor:
    """The 1-D kernel RED-diff builds for ``deblur_uni`` (9 x 1/9) or ``deblur_gauss``
    (``pdf(t, 25)`` at t = -2..2, normalised), float32 as it builds them."""
    if name == "uniform":
        return torch.tensor([1 / 9] * 9)
    if name == "gaussian":  # each tap a float32 exp, as its pdf() computes it
        taps = torch.cat([torch.exp(torch.tensor([-0.5 * (t / 25) ** 2])) for t in range(-2, 3)])
        return taps / taps.sum()
    raise ValueError(f"RED-diff deblur kernel must be 'uniform' or 'gaussian', got {name!r}")


def blur_matrix(kernel: Tensor, n: int, as_shipped: bool) -> Tensor:
    """The 1-D zero-boundary blur matrix: ``M[i, j] = k[j - i + K // 2]``, over the taps RED-diff's
    loop visits (``as_shipped``: ``j < i + K // 2``, the last tap dropped) or all of them."""
    half = kernel.shape[0] // 2
    m = torch.zeros(n, n, dtype=kernel.dtype)
    last = half if as_shipped else half + 1
    for i in range(n):
        for j in range(max(i - half, 0), min(i + last, n)):
            m[i, j] = kernel[j - i + half]
    return m


def nearest_orthogonal(q: Tensor) -> Tensor:
    """The orthogonal matrix nearest to ``q`` in float64 (polar factor): a float32 SVD basis made
    orthogonal to float64 precision, each vector moved by float32 rounding only."""
    a, _, bh = torch.linalg.svd(q.double())
    return a @ bh


class ShippedDeblurOperator(SeparableOperator):
    """RED-diff's ``Deblurring`` as it computes (module docstring): ``U diag(g) V^T`` per channel,
    ``U, S, V`` the float32 SVD of the shipped ``H_small`` with ``S < 3e-2`` zeroed, and ``g`` the
    singular values as its ``singulars()`` pairs them with the modes."""

    def __init__(self, h_small: Tensor, channels: int):
        torch.nn.Module.__init__(self)
        n = h_small.shape[0]
        u, s, v = torch.svd(h_small.float(), some=False)  # RED-diff's call, in float32
        s = torch.where(s < ZERO, torch.zeros_like(s), s)
        products = (s.reshape(n, 1) @ s.reshape(1, n)).reshape(n * n)
        ordered, perm = products.sort(descending=True)  # RED-diff's ordering of the modes, ties included
        rank = torch.empty_like(perm)
        rank[perm] = torch.arange(n * n)
        # mode q of channel c sits at 3 rank(q) + c of Vt's output; singulars() has, there, entry
        # (3 rank(q) + c) mod n^2 of the sorted list (the list repeated once per channel)
        gains = torch.stack([ordered[(channels * rank + c) % (n * n)] for c in range(channels)])
        self.rcond = 0.0  # H_pinv divides by every nonzero value
        u, v = nearest_orthogonal(u), nearest_orthogonal(v)
        for name in ("h", "w"):
            self.register_buffer(f"m_{name}", (u * s.double()) @ v.T)
            self.register_buffer(f"u_{name}", u)
            self.register_buffer(f"s_{name}", s.double())
            self.register_buffer(f"v_{name}", v)
        self.register_buffer("gains", gains.reshape(channels, n, n).double())
        self.out_h = self.out_w = n

    def forward(self, x: Tensor) -> Tensor:
        return self.u(self._s(x) * self.vt(x))

    def adjoint(self, y: Tensor) -> Tensor:
        return self.v(self._s(y) * self.ut(y))

    def singular_values(self) -> Tensor:
        return self.gains

    def _nonzero(self, s: Tensor) -> Tensor:
        return s != 0


class ReddiffDeblur:
    """RED-diff's ``deblur_uni`` / ``deblur_gauss``: ``kernel`` uniform or gaussian;
    ``as_shipped`` True reproduces its operator (defects included), False builds the intended one
    (all taps, centred, exact; ``rcond`` thresholds its solves)."""

    def __init__(self, kernel: str = "uniform", as_shipped: bool = True, rcond: float = 1e-3):
        self.taps = reddiff_kernel(kernel)
        self.kernel, self.as_shipped, self.rcond = kernel, bool(as_shipped), float(rcond)

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        return {}

    def operator(self, artifacts, image_shape: tuple[int, int, int]) -> SeparableOperator:
        c, h, w = image_shape
        if h != w:
            raise ValueError(f"RED-diff's deblurs take square images, got {h} x {w}")
        if self.as_shipped:
            return ShippedDeblurOperator(blur_matrix(self.taps, h, as_shipped=True), c)
        m = blur_matrix(self.taps.double(), h, as_shipped=False)
        return SeparableOperator(m, m, rcond=self.rcond)
