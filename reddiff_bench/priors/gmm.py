"""Gaussian-mixture priors whose diffusion denoiser and measurement posterior are exact.

For ``p(x0) = sum_k pi_k N(mu_k, Sigma_k)`` and ``x_t = alpha x0 + sigma eps``:

* ``p(x_t) = sum_k pi_k N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I)``;
* ``E[x0 | x_t] = sum_k r_k(x_t) [mu_k + alpha Sigma_k (alpha^2 Sigma_k + sigma^2 I)^{-1} (x_t - alpha mu_k)]``
  with responsibilities ``r_k`` from the component evidences.

For a linear measurement ``y = A x0 + sigma_y e`` the posterior is again a Gaussian mixture: each
component is updated by the Kalman/Gaussian-conditioning formulas and reweighted by its evidence
``N(y; A mu_k, A Sigma_k A^T + sigma_y^2 I)``. Covariances are kept eigendecomposed
(``Sigma_k = U_k diag(lambda_k) U_k^T``) so that denoising costs two batched matmuls.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from pathlib import Path

import torch
from torch import Tensor

from ..data.photos import TRAIN_PHOTOS, random_crops
from ..diffusion import LOG_2PI, VPSchedule
from ..files import ensure_writable_dir, publish, read_or_explain
from .base import DiffusionPrior

log = logging.getLogger(__name__)


class GaussianMixture(torch.nn.Module):
    """A Gaussian mixture in R^d with eigendecomposed covariances (all tensors are buffers)."""

    def __init__(self, weights: Tensor, means: Tensor, evals: Tensor, evecs: Tensor):
        super().__init__()
        if not (weights.ndim == 1 and means.ndim == 2 and evals.shape == means.shape and evecs.ndim == 3):
            raise ValueError("weights (K,), means (K,d), evals (K,d) and evecs (K,d,d) expected")
        self.register_buffer("weights", weights / weights.sum())
        self.register_buffer("means", means)
        self.register_buffer("evals", evals.clamp_min(0.0))
        self.register_buffer("evecs", evecs)
        # Isotropic components (Sigma_k = lambda_k I) take fast paths: no d x d rotations.
        self.isotropic = bool(torch.allclose(evals, evals[:, :1].expand_as(evals)))

    @classmethod
    def from_covariances(cls, weights: Tensor, means: Tensor, covariances: Tensor) -> GaussianMixture:
        covariances = 0.5 * (covariances + covariances.transpose(-1, -2))
        evals, evecs = torch.linalg.eigh(covariances)
        return cls(weights, means, evals, evecs)

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    def covariances(self) -> Tensor:
        return torch.einsum("kij,kj,klj->kil", self.evecs, self.evals, self.evecs)

    def mean(self) -> Tensor:
        return self.weights @ self.means

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples (n, d), drawn on the CPU then moved to the mixture's device."""
        cpu = dict(device="cpu", dtype=self.means.dtype)
        comp = torch.multinomial(self.weights.cpu(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, **cpu).to(self.means.device)
        comp = comp.to(self.means.device)
        scaled = z * self.evals[comp].sqrt()
        return self.means[comp] + torch.einsum("nij,nj->ni", self.evecs[comp], scaled)

    def log_prob(self, x: Tensor) -> Tensor:
        return self._noisy_log_evidence(x, torch.ones(x.shape[0], dtype=x.dtype, device=x.device),
                                        torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))[0].logsumexp(-1)

    def _noisy_log_evidence(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component ``log pi_k + log N(x; alpha mu_k, alpha^2 Sigma_k + sigma^2 I)`` (B, K),
        with the eigen-coordinates ``z`` (B, K, d) of ``x - alpha mu_k`` and the variances (B, K, d)."""
        a = alpha[:, None, None]
        diff = x[:, None, :] - a * self.means[None]
        z = torch.einsum("bkd,kde->bke", diff, self.evecs)
        var = a**2 * self.evals[None] + sigma[:, None, None] ** 2
        logn = -0.5 * ((z**2 / var).sum(-1) + var.log().sum(-1) + self.dim * LOG_2PI)
        return logn + self.weights.log()[None], z, var

    def _denoise_isotropic(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        lam = self.evals[:, 0]  # (K,)
        a = alpha[:, None]
        var = a**2 * lam[None] + sigma[:, None] ** 2  # (B, K)
        sq = (x**2).sum(-1, keepdim=True) - 2 * a * (x @ self.means.T) + a**2 * (self.means**2).sum(-1)[None]
        logits = self.weights.log()[None] - 0.5 * (sq / var + self.dim * var.log())
        resp = torch.softmax(logits, dim=-1)  # (B, K)
        gain = a * lam[None] / var  # (B, K): posterior mean mu_k + gain_k (x - alpha mu_k)
        return (resp * (1 - a * gain)) @ self.means + (resp * gain).sum(-1, keepdim=True) * x

    def denoise(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """Exact ``E[x0 | x_t = x]`` for ``x_t = alpha x0 + sigma eps``; x (B, d), alpha and sigma (B,)."""
        if self.isotropic:
            return self._denoise_isotropic(x, alpha, sigma)
        logits, z, var = self._noisy_log_evidence(x, alpha, sigma)
        resp = torch.softmax(logits, dim=-1)
        coef = alpha[:, None, None] * self.evals[None] / var * z
        comp_means = self.means[None] + torch.einsum("bke,kde->bkd", coef, self.evecs)
        return torch.einsum("bk,bkd->bd", resp, comp_means)

    def posterior_moments(self, A: Tensor, y: Tensor, sigma_y: float) -> tuple[Tensor, Tensor, Tensor | None]:
        """Weights (K,), means (K, d) and, unless ``means_only``, covariances (K, d, d) of the
        posterior mixture of ``x`` given ``y = A x + sigma_y e`` (A: (m, d), y: (m,))."""
        return self._condition(A, y, sigma_y, means_only=False)

    def _condition(self, A: Tensor, y: Tensor, sigma_y: float, means_only: bool):
        A = A.to(self.means)
        y = y.to(self.means)
        if self.isotropic:  # Sigma_k = lambda_k I: no d x d covariances for the means
            cov = None
            a_cov = self.evals[:, :1, None] * A[None]  # (K, m, d)
        else:
            cov = self.covariances()
            a_cov = A[None] @ cov  # (K, m, d)
        s = a_cov @ A.T[None] + (sigma_y**2) * torch.eye(A.shape[0], dtype=A.dtype, device=A.device)[None]
        s = 0.5 * (s + s.transpose(-1, -2))
        chol, info = torch.linalg.cholesky_ex(s)
        if bool((info != 0).any()):
            # sigma_y = 0 with a rank-deficient A (e.g. RED-diff's shipped deblurs, whose forward operator
            # drops small singular values): the measurements outside A's range are exactly 0 whatever x is,
            # so conditioning on U_r^T y = S_r V_r^T x, the range's coordinates, is the same posterior
            u, sv, vh = torch.linalg.svd(A, full_matrices=False)
            keep = sv > sv.max() * max(A.shape) * torch.finfo(A.dtype).eps
            if bool(keep.all()):
                raise ValueError("the measurement covariance A Sigma A^T + sigma_y^2 I is singular: "
                                 "does A have zero rows, or sigma_y = 0 with a rank-deficient A?")
            return self._condition(sv[keep, None] * vh[keep], u[:, keep].T @ y, sigma_y, means_only)
        resid = y[None] - self.means @ A.T  # (K, m)
        sol = torch.cholesky_solve(resid[..., None], chol)[..., 0]  # S^{-1} r
        post_means = self.means + torch.einsum("kmd,km->kd", a_cov, sol)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        log_ev = -0.5 * ((resid * sol).sum(-1) + logdet + A.shape[0] * LOG_2PI)
        weights = torch.softmax(self.weights.log() + log_ev, dim=0)
        if means_only:
            return weights, post_means, None
        if cov is None:
            cov = self.covariances()
        post_cov = cov - a_cov.transpose(-1, -2) @ torch.cholesky_solve(a_cov, chol)
        return weights, post_means, post_cov

    def posterior_mean(self, A: Tensor, y: Tensor, sigma_y: float) -> Tensor:
        """The exact posterior mean ``E[x | y]`` (d,): cheaper than :meth:`posterior`."""
        weights, means, _ = self._condition(A, y, sigma_y, means_only=True)
        return weights @ means

    def posterior(self, A: Tensor, y: Tensor, sigma_y: float) -> GaussianMixture:
        """The exact posterior mixture of ``x`` given ``y = A x + sigma_y e`` (A: (m, d), y: (m,)).

        Computed in the mixture's dtype (use float64 for reference numbers)."""
        return GaussianMixture.from_covariances(*self.posterior_moments(A, y, sigma_y))

    def posterior_samples(self, A: Tensor, y: Tensor, sigma_y: float, n: int,
                          generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` exact posterior samples (n, d), with the posterior weights (K,) and means (K, d).

        With one shared isotropic covariance ``lambda I`` (the MCGdiff/TMPD benchmark), the
        posterior covariance ``lambda (I - V diag(lambda s^2 / (lambda s^2 + sigma_y^2)) V^T)`` (A = U S V^T)
        is the same for every component and its square root is applied through the SVD of A:
        no d x d eigendecomposition."""
        lam = self.evals[:, 0]
        if not (self.isotropic and torch.allclose(lam, lam[:1].expand_as(lam))):
            post = self.posterior(A, y, sigma_y)
            return post.sample(n, generator), post.weights, post.means
        weights, means, _ = self._condition(A, y, sigma_y, means_only=True)
        lam0 = lam[0]
        _, s, vh = torch.linalg.svd(A.to(self.means), full_matrices=False)
        shrink = 1 - torch.sqrt(sigma_y**2 / (lam0 * s**2 + sigma_y**2)) if sigma_y > 0 else torch.ones_like(s)
        cpu = dict(device="cpu", dtype=self.means.dtype)
        comp = torch.multinomial(weights.cpu(), n, replacement=True, generator=generator).to(self.means.device)
        z = torch.randn(n, self.dim, generator=generator, **cpu).to(self.means.device)
        z = z - ((z @ vh.T) * shrink) @ vh  # (I - V diag(shrink) V^T) z
        return means[comp] + lam0.sqrt() * z, weights, means


class GMMPrior(DiffusionPrior):
    """An exact diffusion prior: a Gaussian mixture over flattened images (or plain vectors)."""

    prediction_type = "x0"

    def __init__(self, mixture: GaussianMixture, image_shape: tuple[int, ...], schedule: VPSchedule, name: str):
        super().__init__(schedule, image_shape, name)
        if mixture.dim != int(torch.tensor(image_shape).prod()):
            raise ValueError(f"mixture dimension {mixture.dim} does not match image shape {image_shape}")
        # float32 copy for the denoiser (it runs at every solver step), float64 on the CPU for
        # reference posteriors (not a submodule, so .to(device) leaves it alone).
        self.mixture = copy.deepcopy(mixture).float()
        self.reference = (copy.deepcopy(mixture).double().cpu(),)
        # a mixture with singular covariances (the pixel view of a latent prior) has no density in R^d
        self.has_density = bool((mixture.evals > 0).all())

    def network(self, x_t: Tensor, t: Tensor) -> Tensor:
        flat = x_t.reshape(x_t.shape[0], -1)
        mix = self.mixture
        x0 = mix.denoise(flat.to(mix.means.dtype), self.schedule.alpha(t).to(mix.means),
                         self.schedule.sigma(t).to(mix.means))
        return x0.to(x_t.dtype).reshape(x_t.shape)

    def exact_posterior(self, A: Tensor, y: Tensor, sigma_y: float) -> GaussianMixture:
        """The exact posterior given ``y = A x + sigma_y e`` with x flattened, computed in float64."""
        return self.reference[0].posterior(A.detach().double().cpu(), y.detach().double().cpu(), sigma_y)

    def exact_posterior_samples(self, A: Tensor, y: Tensor, sigma_y: float, n: int,
                                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` exact posterior samples (n, d), the posterior weights (K,) and means (K, d), float64."""
        return self.reference[0].posterior_samples(A.detach().double().cpu(), y.detach().double().cpu(), sigma_y,
                                                   n, generator)

    def exact_posterior_mean(self, A: Tensor, y: Tensor, sigma_y: float) -> Tensor:
        return self.reference[0].posterior_mean(A.detach().double().cpu(), y.detach().double().cpu(), sigma_y)

    def log_prob(self, x: Tensor) -> Tensor:
        """The exact log-density of the prior at each row of ``x`` (n, ...), float64."""
        return self.reference[0].log_prob(x.detach().reshape(x.shape[0], -1).double().cpu())


def _fit_key(**params) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def fit_photo_mixture(size: int, n_components: int, n_crops: int, scale: float, seed: int,
                      reg_covar: float, max_iter: int, cache_dir: str | Path | None) -> GaussianMixture:
    """Fit a full-covariance Gaussian mixture (scikit-learn EM) to random ``size`` x ``size`` RGB
    crops of the training photos; cached under ``cache_dir`` by a hash of the parameters (built
    once, under a lock, when several jobs ask at once)."""

    params = dict(size=size, n_components=n_components, n_crops=n_crops, scale=scale, seed=seed,
                  reg_covar=reg_covar, max_iter=max_iter, photos=list(TRAIN_PHOTOS), version=1)
    if cache_dir is None:
        return _fit(params)
    folder = ensure_writable_dir(cache_dir, "the cache folder", "paths.cache_dir (REDDIFF_BENCH_CACHE)")
    path = folder / f"gmm_photos_{_fit_key(**params)}.pt"
    publish(path, lambda tmp: torch.save(_fit(params).state_dict() | {"params": params}, tmp))

    def read(p: Path) -> GaussianMixture:
        state = torch.load(p, map_location="cpu", weights_only=True)
        return GaussianMixture(state["weights"], state["means"], state["evals"], state["evecs"])

    return read_or_explain(path, read, "cached Gaussian-mixture fit")


def _fit(params: dict) -> GaussianMixture:
    from sklearn.mixture import GaussianMixture as SkGaussianMixture  # heavy, optional: imported when used

    size, n_crops, seed = params["size"], params["n_crops"], params["seed"]
    generator = torch.Generator().manual_seed(seed)
    crops = random_crops(TRAIN_PHOTOS, size, n_crops, params["scale"], generator).reshape(n_crops, -1).numpy()
    log.info("fitting a %d-component GMM to %d crops of %dx%d (cached afterwards)", params["n_components"], n_crops,
             size, size)
    start = time.perf_counter()
    sk = SkGaussianMixture(params["n_components"], covariance_type="full", reg_covar=params["reg_covar"],
                           max_iter=params["max_iter"], tol=1e-2, random_state=seed,
                           init_params="k-means++").fit(crops)  # float32 crops: 2x faster EM
    log.info("GMM fitted in %.1f s (%d EM iterations, converged=%s)", time.perf_counter() - start, sk.n_iter_,
             sk.converged_)
    return GaussianMixture.from_covariances(*(torch.from_numpy(a).double() for a in
                                              (sk.weights_, sk.means_, sk.covariances_)))


def photo_gmm_prior(size: int = 16, n_components: int = 8, n_crops: int = 8000, scale: float = 0.5,
                    seed: int = 0, reg_covar: float = 1e-4, max_iter: int = 30, num_steps: int = 1000,
                    cache_dir: str | None = None) -> GMMPrior:
    """The offline exact prior over ``size`` x ``size`` RGB crops of the training photos."""
    mixture = fit_photo_mixture(size, n_components, n_crops, scale, seed, reg_covar, max_iter, cache_dir)
    return GMMPrior(mixture, (3, size, size), VPSchedule.linear(num_steps), name=f"gmm_photos{size}")


def grid_gmm_prior(dim: int, spacing: float = 8.0, random_weights: bool = False, seed: int = 0,
                   num_steps: int = 1000) -> GMMPrior:
    """The MCGdiff/TMPD benchmark prior: 25 unit-covariance components with means
    ``(8i, 8j, 8i, 8j, ...)``, i, j in {-2..2}; equal weights (TMPD) or ``randn(25)^2`` (MCGdiff)."""
    grid = torch.arange(-2, 3, dtype=torch.float64) * spacing
    ii, jj = torch.meshgrid(grid, grid, indexing="ij")
    pairs = torch.stack([ii.flatten(), jj.flatten()], dim=1)  # (25, 2)
    means = pairs.repeat(1, (dim + 1) // 2)[:, :dim]
    if random_weights:
        weights = torch.randn(25, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) ** 2
    else:
        weights = torch.ones(25, dtype=torch.float64)
    evals = torch.ones(25, dim, dtype=torch.float64)
    evecs = torch.eye(dim, dtype=torch.float64).expand(25, dim, dim).clone()
    return GMMPrior(GaussianMixture(weights, means, evals, evecs), (dim,), VPSchedule.linear(num_steps),
                    name=f"gmm_grid{dim}")


def gaussian_prior(dim: int, std: float = 1.0, num_steps: int = 1000) -> GMMPrior:
    """``N(0, std^2 I)`` in dimension ``dim``: the simplest exact prior, under which regularised
    least squares (``solver=pinv solver.delta=sigma_y^2/std^2``) is the exact posterior mean."""
    evals = torch.full((1, dim), float(std) ** 2, dtype=torch.float64)
    evecs = torch.eye(dim, dtype=torch.float64)[None].clone()
    means = torch.zeros(1, dim, dtype=torch.float64)
    mixture = GaussianMixture(torch.ones(1, dtype=torch.float64), means, evals, evecs)
    return GMMPrior(mixture, (dim,), VPSchedule.linear(num_steps), name=f"gaussian{dim}")
