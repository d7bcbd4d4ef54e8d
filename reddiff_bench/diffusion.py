"""The discrete-time variance-preserving (VP) diffusion schedule shared by priors and solvers.

``x_t = alpha_t x0 + sigma_t eps`` with ``alpha_t = sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)``,
``abar_t = prod_{s<=t} (1 - beta_s)`` and ``t`` an integer in ``0..T-1``. This is the only place
where ``x0`` and ``eps`` predictions are converted into each other.

Solvers on continuous noise levels (latent DAPS) use fractional timesteps: a floating-point ``t``
in ``[-1, T-1]`` interpolates ``log abar`` linearly between integer timesteps, with ``abar = 1`` at
``t = -1``; :meth:`VPSchedule.fractional_timestep` maps a VE noise level ``sigma`` (``abar =
1 / (1 + sigma^2)``) to its fractional timestep. Integer ``t`` reads the table as before.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor


class VPSchedule(torch.nn.Module):
    """A VP noise schedule given by its betas (index ``t`` = ``t``-th forward step, 0-based)."""

    def __init__(self, betas: Tensor):
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        abar = torch.cumprod(1.0 - betas, dim=0)
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("abar", abar, persistent=False)

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> VPSchedule:
        """ADM / DDPM linear betas; like guided-diffusion, the endpoints are given for T=1000 and
        rescaled by ``1000 / num_steps`` for other T."""
        scale = 1000.0 / num_steps
        return cls(torch.linspace(beta_start * scale, beta_end * scale, num_steps, dtype=torch.float64))

    @property
    def num_steps(self) -> int:
        return int(self.abar.shape[0])

    def _log_abar(self) -> Tensor:
        """``log abar`` at ``t = -1, 0, ..., T-1`` (``abar = 1`` at ``t = -1``), float64."""
        return torch.cat([torch.zeros(1, dtype=self.abar.dtype, device=self.abar.device), self.abar.log()])

    def _fractional_abar(self, t: Tensor) -> Tensor:
        """``abar`` at fractional timesteps ``t`` in ``[-1, T-1]`` (log-linear between integers)."""
        if bool(((t < -1) | (t > self.num_steps - 1)).any()):
            raise ValueError(f"fractional timesteps must lie in [-1, {self.num_steps - 1}], got {t.min().item()} to "
                             f"{t.max().item()}")
        table = self._log_abar()
        u = t.to(table.dtype) + 1
        lo = u.floor().long().clamp(max=self.num_steps - 1)
        frac = u - lo
        return (table[lo] * (1 - frac) + table[lo + 1] * frac).exp()

    def fractional_timestep(self, sigma: float | Tensor) -> Tensor:
        """The fractional timestep (float64) whose ``abar`` is ``1 / (1 + sigma^2)``: a VE noise
        level ``sigma`` (``x / sqrt(abar) = x0 + sigma eps``) in this schedule's time."""
        sigma = torch.as_tensor(sigma, dtype=self.abar.dtype, device=self.abar.device)
        target = torch.log1p(sigma**2)  # -log abar, increasing in t
        table = -self._log_abar()
        top = float(((1 - self.abar[-1]) / self.abar[-1]).sqrt())
        if bool((sigma < 0).any()) or bool((target > table[-1]).any()):
            raise ValueError(f"noise level sigma {sigma.max().item():.4g} is outside this schedule's range "
                             f"[0, {top:.4g}]")
        hi = torch.searchsorted(table, target).clamp(1, self.num_steps)
        frac = (target - table[hi - 1]) / (table[hi] - table[hi - 1])
        return hi - 2 + frac

    def _gather(self, values: Tensor, t: Tensor, like: Tensor | None, of_abar: Callable[[Tensor], Tensor]) -> Tensor:
        t = torch.as_tensor(t, device=values.device)
        out = of_abar(self._fractional_abar(t)) if t.is_floating_point() else values[t.long()]
        if like is None:
            return out
        out = out.to(device=like.device, dtype=like.dtype)
        return out.reshape(out.shape + (1,) * (like.ndim - out.ndim))

    def abar_t(self, t: Tensor, like: Tensor | None = None) -> Tensor:
        return self._gather(self.abar, t, like, lambda a: a)

    def alpha(self, t: Tensor, like: Tensor | None = None) -> Tensor:
        """``sqrt(abar_t)``, reshaped to broadcast against ``like`` when given."""
        return self._gather(self.abar.sqrt(), t, like, torch.sqrt)

    def sigma(self, t: Tensor, like: Tensor | None = None) -> Tensor:
        """``sqrt(1 - abar_t)``, reshaped to broadcast against ``like`` when given."""
        return self._gather((1.0 - self.abar).sqrt(), t, like, lambda a: (1.0 - a).sqrt())

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return (x_t - self.sigma(t, x_t) * eps) / self.alpha(t, x_t)

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        return (x_t - self.alpha(t, x_t) * x0) / self.sigma(t, x_t)

    def v_target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """The velocity ``v = sqrt(abar) eps - sqrt(1 - abar) x0`` (Salimans & Ho, 2022)."""
        return self.alpha(t, x0) * eps - self.sigma(t, x0) * x0

    def x0_eps_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """``x0 = sqrt(abar) x_t - sqrt(1 - abar) v`` and ``eps = sqrt(1 - abar) x_t + sqrt(abar) v``."""
        a, s = self.alpha(t, x_t), self.sigma(t, x_t)
        return a * x_t - s * v, s * x_t + a * v

    def add_noise(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self.alpha(t, x0) * x0 + self.sigma(t, x0) * eps

    SPACINGS = ("uniform", "respaced")

    def timesteps(self, num_steps: int, spacing: str = "uniform") -> list[int]:
        """``num_steps`` timesteps in descending order, from the top of the schedule down to 0.

        ``spacing="uniform"``:

        * ``num_steps`` divides ``T``: ``t_i = i * T / num_steps`` (top ``T - T / num_steps``), the
          grid of the RED-diff, DDRM and DDIM reference code (``range(0, T, T // N)``);
        * otherwise the respaced grid below (top ``T - 1``). The reference grid has no answer here
          (``range(0, T, T // N)`` holds more than N steps), and stopping the grid early would
          drop the top of the schedule: samplers would start from pure noise at a timestep
          whose ``x_t`` is far from noise.

        ``spacing="respaced"``: guided-diffusion's ``space_timesteps(T, [N])`` (top ``T - 1``), the
        grid of the DPS code for any N: ``t_i = round(c_i)`` with ``c_0 = 0`` and
        ``c_{i+1} = c_i + (T - 1) / (N - 1)`` accumulated in floating point, as the reference does
        (``round(i (T - 1) / (N - 1))`` differs by one step for 278 of the 1000 step counts at
        T = 1000, where the accumulated sum lands on the other side of a half). The two spacings
        agree at ``N = T``.
        """
        T = self.num_steps
        if not 1 <= num_steps <= T:
            raise ValueError(f"num_steps must be in 1..{T}, got {num_steps}")
        if spacing not in self.SPACINGS:
            raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {self.SPACINGS}")
        if spacing == "uniform" and T % num_steps == 0:
            skip = T // num_steps
            return [i * skip for i in range(num_steps - 1, -1, -1)]
        if num_steps == 1:
            return [0]  # guided-diffusion's single step
        stride, position, steps = (T - 1) / (num_steps - 1), 0.0, []
        for _ in range(num_steps):
            steps.append(round(position))
            position += stride
        return steps[::-1]


def seed_from(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (independent of PYTHONHASHSEED)."""

    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def make_generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded from ``parts`` (e.g. run seed, stream name, image id)."""
    return torch.Generator(device="cpu").manual_seed(seed_from(*parts))


class SampleStream(Sequence[torch.Generator]):
    """The ``n`` samples of one image drawing from one generator.

    Stands where a list of per-row generators would (``len`` is ``n``, every row maps to the same
    generator), and :func:`randn_per_sample` draws all ``n`` rows in one call instead of ``n``:
    with 1000 posterior samples per problem, per-row draws cost more than the solver's arithmetic.
    The samples still depend only on (seed, image id, n), never on the batch.
    """

    def __init__(self, generator: torch.Generator, n: int):
        self.generator, self.n = generator, int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self.generator] * len(range(*k.indices(self.n)))
        if not -self.n <= k < self.n:
            raise IndexError(k)
        return self.generator


def randn_per_sample(generators: Sequence[torch.Generator], shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Stack one standard normal draw of ``shape`` per generator (one draw of ``(n, *shape)`` for a
    :class:`SampleStream`); drawn on the CPU so the numbers do not depend on the device, then moved
    to ``like``'s device and dtype."""
    if isinstance(generators, SampleStream):
        draws = torch.randn((len(generators), *shape), generator=generators.generator, dtype=torch.float32)
    else:
        draws = torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
    return draws.to(device=like.device, dtype=like.dtype)


def categorical_per_sample(generators: Sequence[torch.Generator], log_weights: Tensor, n: int) -> Tensor:
    """``n`` indices per row of ``log_weights`` (B, P), drawn with replacement from each row's
    normalised weights with that row's generator (one draw of (B, n) for a :class:`SampleStream`);
    on the CPU, so the draws do not depend on the device."""
    probs = (log_weights - log_weights.amax(-1, keepdim=True)).exp().double().cpu()
    if isinstance(generators, SampleStream):
        out = torch.multinomial(probs, n, replacement=True, generator=generators.generator)
    else:
        out = torch.stack([torch.multinomial(p, n, replacement=True, generator=g) for p, g in zip(probs, generators)])
    return out.to(log_weights.device)


LOG_2PI = math.log(2 * math.pi)
