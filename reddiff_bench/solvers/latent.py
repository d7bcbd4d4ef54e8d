"""Shared pieces of the latent solvers: the refusal of pixel priors, the forward model seen from
the latents (``A(D(z))``), and per-image optimisation with early stopping (ReSample's data
consistency).

A latent solver takes a :class:`~reddiff_bench.priors.latent.LatentPrior` and returns images: it
runs in the latent space of ``prior.latent`` and decodes its final latents once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..operators import Operator


def require_latent_prior(solver: str, prior) -> None:
    """A latent solver refuses a pixel prior (the pipeline refuses it earlier, from the config)."""
    if getattr(prior, "space", "pixel") != "latent":
        raise ValueError(f"{solver} is a latent solver: it needs a latent prior (model=gmm_latent, ldm, "
                         f"stable_diffusion, ldm_random, sd_random), got {getattr(prior, 'name', prior)!r}")


class DecodedOperator(Operator):
    """``z -> A(D(z))``: the task's forward model composed with the prior's decoder (each call is
    one decoder pass per image, counted by the prior). Its initial estimate is ``E(A^+ y)``."""

    def __init__(self, operator: Operator, prior):
        super().__init__()
        self.operator = operator
        self.prior = (prior,)  # not a submodule: the prior is moved and counted by its owner

    def forward(self, z: Tensor) -> Tensor:
        return self.operator(self.prior[0].decode(z))

    def y_support(self, y: Tensor) -> Tensor | None:
        return self.operator.y_support(y)

    def init_estimate(self, y: Tensor) -> Tensor:
        return self.prior[0].encode(self.operator.init_estimate(y))


def decoded(prior, z: Tensor) -> Tensor:
    """The images of the final latents."""
    with torch.no_grad():
        return prior.decode(z.detach())


def fit_per_image(start: Tensor, loss_fn: Callable[[Tensor], Tensor], lr: float, max_iters: int, tol: float,
                  window: int | None = None, weight_decay: float = 0.01) -> Tensor:
    """Minimise ``loss_fn(p)`` (B,) from ``start`` (B, ...) with AdamW (torch's defaults: betas
    (0.9, 0.999), eps 1e-8, weight decay 0.01, and its order of operations), each image on its
    own. As in ReSample's code, each iteration takes its step, then an image stops if the loss
    it stepped from was below ``tol`` or, with ``window``, exceeded the loss ``window``
    iterations earlier; its iterate is then frozen, so an image's result does not depend on its
    batch."""
    p = start.detach().clone()
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    active = torch.ones(p.shape[0], dtype=torch.bool, device=p.device)
    history: list[Tensor] = []
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    shape = (-1,) + (1,) * (p.ndim - 1)
    for it in range(1, max_iters + 1):
        p.requires_grad_(True)
        loss = loss_fn(p)
        (grad,) = torch.autograd.grad(loss.sum(), p)
        with torch.no_grad():
            loss = loss.detach()
            keep = active.reshape(shape)
            p = p.detach()
            m = torch.where(keep, m.lerp(grad, 1 - beta1), m)
            v = torch.where(keep, v * beta2 + (1 - beta2) * grad * grad, v)
            denom = v.sqrt() / (1 - beta2**it) ** 0.5 + eps
            p = torch.where(keep, p * (1 - lr * weight_decay) - lr / (1 - beta1**it) * m / denom, p)
            if window is not None:
                history.append(loss)
                if len(history) > window:
                    active &= ~(history.pop(0) < loss)
            active &= ~(loss < tol)
            if not bool(active.any()):
                break
    return p.detach()
