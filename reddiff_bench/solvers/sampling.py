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
