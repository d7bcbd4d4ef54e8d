"""The prior contract: a denoiser at integer VP timesteps, with cost accounting built in.

A prior predicts ``eps``, ``x0`` or the velocity ``v`` natively (``prediction_type``); :meth:`DiffusionPrior.predict`
returns both, converted by the schedule in one place. Every call counts one network function
evaluation (NFE) per image of the batch, and every backward pass that reaches the prior's output
counts one vector-Jacobian product (VJP), so solvers never count their own cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..diffusion import VPSchedule


@dataclass
class Prediction:
    eps: Tensor
    x0: Tensor


@dataclass
class CallCounter:
    nfe: int = 0  # denoiser evaluations per image
    vjp: int = 0  # vector-Jacobian products through the network per image
    calls: int = 0  # network calls (one call may hold several evaluations per image)
    # latent priors: autoencoder passes per image, forward and backward (pixel priors keep 0)
    decoder: int = 0
    decoder_vjp: int = 0
    encoder: int = 0
    encoder_vjp: int = 0

    # counter field -> row column
    COLUMNS = {"nfe": "nfe", "vjp": "vjp", "decoder": "decoder_calls", "decoder_vjp": "decoder_vjp",
               "encoder": "encoder_calls", "encoder_vjp": "encoder_vjp"}

    def reset(self) -> None:
        for name in (*self.COLUMNS, "calls"):
            setattr(self, name, 0)

    def columns(self) -> dict[str, int]:
        """The per-image cost columns of a row: ``nfe``, ``vjp``, and the autoencoder's passes
        (``decoder_calls``, ``decoder_vjp``, ``encoder_calls``, ``encoder_vjp``; 0 for pixel priors)."""
        return {column: getattr(self, name) for name, column in self.COLUMNS.items()}


class DiffusionPrior(torch.nn.Module):
    """Base class of every prior. Subclasses implement :meth:`network` (native prediction)."""

    prediction_type: str = "eps"  # or "x0", or "v" (sqrt(abar) eps - sqrt(1 - abar) x0)
    space: str = "pixel"  # "latent": a latent prior (priors/latent.py), for latent solvers only
    passes: int = 1  # network passes per evaluation (2 under classifier-free guidance), counted in the NFE

    def __init__(self, schedule: VPSchedule, image_shape: tuple[int, int, int], name: str):
        super().__init__()
        self.schedule = schedule
        self.image_shape = tuple(int(s) for s in image_shape)
        self.state_shape = self.image_shape  # what the network takes (a latent prior's latents)
        self.name = name
        self.counter = CallCounter()
        # the range of clean data: images are in [-1, 1] (the project's convention); vectors (the
        # Gaussian-mixture track) have none
        self.data_range: tuple[float, float] | None = (-1.0, 1.0) if len(self.image_shape) == 3 else None

    def network(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The native prediction (``eps``, ``x0`` or ``v``, per ``prediction_type``) at timesteps ``t`` (B,)."""
        raise NotImplementedError

    def predict(self, x_t: Tensor, t: Tensor | int, evaluations: int = 1) -> Prediction:
        """Predict ``eps`` and ``x0`` from ``x_t`` at integer timesteps ``t`` (scalar or (B,)), or
        at fractional ones (a floating-point ``t``: continuous noise levels, see
        :meth:`~reddiff_bench.diffusion.VPSchedule.fractional_timestep`; the network gets the
        fractional timestep).

        ``evaluations``: how many denoiser evaluations per image (per output sample) this call
        holds, when a solver stacks several per image into one batched call (RED-Diff parallel's K
        timesteps, MCGdiff's particles); the call counts that many NFEs (and VJPs)."""
        if x_t.shape[1:] != self.state_shape:
            raise ValueError(
                f"prior {self.name!r} takes inputs of shape {self.state_shape}, got {tuple(x_t.shape[1:])}"
            )
        t = torch.as_tensor(t, device=x_t.device)
        t = t.to(x_t.dtype) if t.is_floating_point() else t.long()
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        out = self.network(x_t, t)
        self.counter.nfe += int(evaluations) * self.passes
        self.counter.calls += 1
        if out.requires_grad:
            out.register_hook(lambda grad: self._count_vjp(grad, int(evaluations) * self.passes))
        if self.prediction_type == "eps":
            return Prediction(eps=out, x0=self.schedule.x0_from_eps(x_t, t, out))
        if self.prediction_type == "v":
            x0, eps = self.schedule.x0_eps_from_v(x_t, t, out)
            return Prediction(eps=eps, x0=x0)
        return Prediction(eps=self.schedule.eps_from_x0(x_t, t, out), x0=out)

    def _count_vjp(self, grad: Tensor, evaluations: int = 1) -> None:
        self.counter.vjp += evaluations

    @property
    def device(self) -> torch.device:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")
