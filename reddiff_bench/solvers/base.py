"""The solver contract.

``solve(prior, operator, y, *, sigma_y, generators, callback=None) -> SolverResult``

* ``prior``: a :class:`~reddiff_bench.priors.DiffusionPrior` (it counts NFEs and VJPs itself);
* ``operator``: the batched forward model, ``y``: the measurements (B, ...), ``sigma_y``: the
  noise level on the [-1, 1] scale;
* ``generators``: one ``torch.Generator`` per row of ``y`` (or a
  :class:`~reddiff_bench.diffusion.SampleStream`, the n samples of one image sharing one): all of a
  solver's randomness comes from them, through ``randn_per_sample``, so an image's result does
  not depend on the batch it ran in;
* ``callback(step, info)``: optional; receives after each step its scalars (timestep, losses;
  0-d or per-image (B,) tensors), ``total`` (the number of steps) and ``x``, the current iterate
  (a sampler's ``x_s``, RED-Diff's ``mu``), for logging, profiling and trajectories.

Solvers do no I/O, never move tensors to a device themselves, and take their hyperparameters
as explicit keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from ..operators import Operator
from ..priors import DiffusionPrior

Callback = Callable[[int, dict[str, Any]], None]


@dataclass
class SolverResult:
    """The estimate ``x0`` (B, C, H, W) and per-image diagnostics (name -> tensor (B,))."""

    x0: Tensor
    diagnostics: dict[str, Tensor] = field(default_factory=dict)


class Solver(Protocol):
    def solve(self, prior: DiffusionPrior, operator: Operator, y: Tensor, *, sigma_y: float,
              generators: list[torch.Generator], callback: Callback | None = None) -> SolverResult: ...


def per_sample_mean(x: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean over all but the batch dimension; with ``weights`` (0/1, broadcastable), the mean over
    the weighted entries only."""
    if weights is None:
        return x.reshape(x.shape[0], -1).mean(-1)
    w = torch.broadcast_to(weights, x.shape).reshape(x.shape[0], -1)
    return (x.reshape(x.shape[0], -1) * w).sum(-1) / w.sum(-1).clamp_min(1)
