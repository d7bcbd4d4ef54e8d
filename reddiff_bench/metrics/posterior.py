"""Distances to the exact posterior, for the analytic priors that have one (linear tasks with
Gaussian noise): the solver's samples against exact posterior samples and the posterior mean."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from ..diffusion import make_generator
from ..operators import Operator, operator_matrix, support_values
from .distribution import sliced_distances
from .image import psnr


def has_exact_posterior(prior, operator: Operator) -> bool:
    return hasattr(prior, "exact_posterior_mean") and operator.linear


def posterior_metrics(prior, operator: Operator, y: Tensor, samples: Tensor, x: Tensor, *, sigma_y: float,
                      seed: int, task_name: str, image_id: str, sw_projections: int) -> dict[str, float]:
    """``operator`` is the image's own (batch of one), ``y`` its measurement, ``samples`` (n, ...) the
    solver's outputs for it, ``x`` the ground truth. One sample: its squared distance to the
    posterior mean; several: sliced Wasserstein distances to as many exact posterior samples (drawn
    from the generator of (seed, "posterior", task, image)), distances to the mean and the nearest
    mode. Empty when the prior has no exact posterior for this operator.

    With an exact prior density (``prior.log_prob``; not for a mixture with singular covariances,
    such as a latent prior's pixel view), whatever the operator: ``prior_nll``, the
    negative log-density of the outputs under the prior in nats per dimension (the mean over the
    samples), and ``prior_nll_truth``, the same of the ground truth: a realism measure that a point
    estimate is judged by too (an average of modes sits where the prior has little mass; a typical
    prior draw scores about the truth's value)."""
    realism = {}
    if hasattr(prior, "log_prob") and getattr(prior, "has_density", True):
        d_all = samples[0].numel()
        realism = {"prior_nll": float(-prior.log_prob(samples).mean() / d_all),
                   "prior_nll_truth": float(-prior.log_prob(x[None]).mean() / d_all)}
    if not has_exact_posterior(prior, operator):
        return realism
    shape = tuple(x.shape)
    A = operator_matrix(operator, shape)  # works on a float64 CPU copy
    y_obs = support_values(copy.deepcopy(operator).cpu().double(), y[None].double().cpu())
    flat = samples.detach().reshape(samples.shape[0], -1).double().cpu()
    d = flat.shape[1]
    if flat.shape[0] == 1:
        post_mean = prior.exact_posterior_mean(A, y_obs, sigma_y)
        out = {"mse_to_post_mean": float(((flat[0] - post_mean) ** 2).mean())}
    else:
        generator = make_generator(seed, "posterior", task_name, image_id)
        exact, weights, means = prior.exact_posterior_samples(A, y_obs, sigma_y, flat.shape[0], generator)
        post_mean = weights @ means
        modes = means[weights >= 1e-3 * weights.max()]
        sliced = sliced_distances(flat, exact, sw_projections, generator)
        out = {
            "mse_to_post_mean": float(((flat.mean(0) - post_mean) ** 2).mean()),
            "sw_to_posterior": sliced["sw2"],
            "sw1_to_posterior": sliced["sw1"],
            "dist_to_post_mean": float(((flat - post_mean) ** 2).sum(-1).sqrt().mean() / d**0.5),
            "dist_to_nearest_mode": float(torch.cdist(flat, modes).min(-1).values.mean() / d**0.5),
        }
    out.update(realism)
    if len(shape) == 3:
        out["psnr_post_mean"] = float(psnr(post_mean.reshape(shape).float()[None], x[None].cpu())[0])
    else:
        out["mse_post_mean"] = float(((post_mean.float() - x.cpu().reshape(-1)) ** 2).mean())
    return out
