"""Shared pieces of the diffusion samplers: timestep pairs and the DDIM / DDPM transition.

Timesteps run ``t_0 > t_1 > ... > t_{N-1} = 0`` (``VPSchedule.timesteps``); each step goes from
``t`` to the next one ``s``, and the last from ``t = 0`` to ``s = -1`` where ``abar = 1`` (the
clean image), so a sampler's final state is its estimate of ``x0``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..diffusion import VPSchedule
from ..operators import SVDOperator


def timestep_pairs(schedule: VPSchedule, steps: int, start: int | None = None,
                   spacing: str = "uniform") -> list[tuple[int, int]]:
    """``(t, s)`` pairs for ``steps`` evenly spaced timesteps (``VPSchedule.timesteps``), ending with
    ``(0, -1)``; with ``start``, only the timesteps at or below it (a solver that starts from a
    noised estimate)."""
    ts = schedule.timesteps(steps, spacing)
    if start is not None:
        ts = [t for t in ts if t <= start]
        if not ts:
            raise ValueError(f"no timestep at or below start={start}")
    return list(zip(ts, ts[1:] + [-1]))


GRIDS = ("ldm", "uniform")  # the latent solvers' grids: the LDM code's, or the project's


def ldm_pairs(T: int, steps: int) -> list[tuple[int, int]]:
    """The DDIM grid of the LDM/Stable Diffusion code (``make_ddim_timesteps``, uniform):
    ``t = 1, 1 + c, 1 + 2c, ...`` below ``T + 1`` with ``c = T // steps``, descending, the last step
    going to ``t = 0`` (``abar_0``, not a clean image: that code's ``ddim_alphas_prev`` starts at
    ``alphas_cumprod[0]``). As in that code, ``steps`` that do not divide ``T`` give
    ``ceil(T / c)`` steps (63 for 60 of 1000). With ``steps = T`` the top would be ``T``; PSLD's
    code then takes the coefficients one lower (its network still sees ``t + 1``): here both are
    one lower, ``T - 1`` down to 0, and the last step stays at ``abar_0``."""
    if not 1 <= steps <= T:
        raise ValueError(f"{steps} steps do not fit a schedule of {T}")
    ts = [t + 1 for t in range(0, T, T // steps)][::-1]
    if ts[0] > T - 1:
        ts = [t - 1 for t in ts]
    return list(zip(ts, ts[1:] + [0]))


def check_grid(grid: str) -> str:
    if grid not in GRIDS:
        raise ValueError(f"solver.grid must be one of {GRIDS}, got {grid!r}")
    return grid


def grid_pairs(schedule: VPSchedule, steps: int, grid: str) -> list[tuple[int, int]]:
    """``(t, s)`` pairs on one of :data:`GRIDS`: ``"ldm"`` (:func:`ldm_pairs`) or ``"uniform"``
    (:func:`timestep_pairs`, ending at a clean estimate)."""
    if check_grid(grid) == "ldm":
        return ldm_pairs(schedule.num_steps, steps)
    return timestep_pairs(schedule, steps)


def abar(schedule: VPSchedule, t: int, like: Tensor) -> Tensor:
    """``abar_t`` as a 0-d tensor like ``like`` (1 for t < 0)."""
    value = schedule.abar[t] if t >= 0 else torch.ones((), dtype=schedule.abar.dtype)
    return value.to(device=like.device, dtype=like.dtype)


def ddim_step(x0: Tensor, eps: Tensor, abar_t: Tensor, abar_s: Tensor, eta: float, noise: Tensor | None) -> Tensor:
    """DDIM (Song et al. 2021, Eq. 12) from ``t`` to ``s``:
    ``x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - c^2) eps + c z`` with
    ``c = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)``. ``eta = 1`` is DDPM
    ancestral sampling (posterior q(x_s | x_t, x0) with variance beta-tilde)."""
    c = eta * ((1 - abar_s) / (1 - abar_t)).sqrt() * (1 - abar_t / abar_s).clamp_min(0).sqrt()
    out = abar_s.sqrt() * x0 + (1 - abar_s - c**2).clamp_min(0).sqrt() * eps
    if noise is not None and eta > 0:
        out = out + c * noise
    return out


def per_sample_norm(residual: Tensor) -> Tensor:
    """Euclidean norm of each image's residual (B,), never over the whole batch."""
    return residual.reshape(residual.shape[0], -1).norm(dim=-1)


def require_svd(solver: str, operator: object) -> None:
    """Refuse, before any work, an operator without an SVD (nonlinear ones, or linear ones that
    lack one) for a solver that runs in the SVD basis."""
    if not isinstance(operator, SVDOperator):
        fix = getattr(operator, "svd_hint", "choose another solver for this task")
        raise ValueError(f"{solver} needs a linear operator with an SVD; {type(operator).__name__} has none: {fix}.")


def spectral_measurement(operator: SVDOperator, y: Tensor, sigma_y: float) -> tuple[Tensor, Tensor, Tensor]:
    """In the spectral domain of ``x`` (``V^T x``): the measured mask, ``ybar_i = (U^T y)_i / s_i``
    and its noise level ``sigma_y / s_i`` (zeros where unmeasured)."""
    zy = operator.ut(y)
    s, nonzero = operator.spectrum(zy)
    safe = torch.where(nonzero, s, 1)
    ybar = operator.embed(torch.where(nonzero, zy / safe, 0))
    level = operator.embed(torch.where(nonzero, sigma_y / safe, 0))
    measured = operator.embed(nonzero.to(y.dtype)) > 0
    return measured, ybar, level
