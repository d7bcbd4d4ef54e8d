"""The Gaussian-mixture prior's closed forms against Monte Carlo and against each other."""

import math

import pytest
import torch

from reddiff_bench.diffusion import VPSchedule
from reddiff_bench.priors.gmm import GaussianMixture, GMMPrior


def random_mixture(dim: int, k: int, seed: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(k, dim, generator=g, dtype=torch.float64)
    factors = torch.randn(k, dim, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
    covs = factors @ factors.transpose(-1, -2) + 0.1 * torch.eye(dim, dtype=torch.float64)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    return GaussianMixture.from_covariances(weights, means, covs)


def importance_mean(samples: torch.Tensor, log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-normalised importance-sampling mean and its standard error (delta method)."""
    w = torch.softmax(log_w, 0)
    mean = (w[:, None] * samples).sum(0)
    se = ((w[:, None] ** 2) * (samples - mean) ** 2).sum(0).sqrt()
    return mean, se


@pytest.mark.parametrize("alpha,sigma", [(0.9, 0.45), (0.5, 0.87)])
def test_denoiser_equals_posterior_mean_by_monte_carlo(alpha, sigma):
    mix = random_mixture(dim=2, k=3, seed=1)
    g = torch.Generator().manual_seed(2)
    x0 = mix.sample(400_000, generator=g)
    x_t = (alpha * mix.sample(1, generator=g) + sigma * torch.randn(1, 2, generator=g, dtype=torch.float64))
    log_w = -0.5 * ((x_t - alpha * x0) ** 2).sum(-1) / sigma**2
    mc, se = importance_mean(x0, log_w)
    exact = mix.denoise(x_t, torch.tensor([alpha], dtype=torch.float64), torch.tensor([sigma], dtype=torch.float64))[0]
    assert torch.all((exact - mc).abs() < 5 * se + 1e-3), (exact, mc, se)


def test_posterior_moments_match_monte_carlo():
    mix = random_mixture(dim=3, k=3, seed=3)
    g = torch.Generator().manual_seed(4)
    A = torch.randn(2, 3, generator=g, dtype=torch.float64)
    sigma_y = 0.4
    x_true = mix.sample(1, generator=g)[0]
    y = A @ x_true + sigma_y * torch.randn(2, generator=g, dtype=torch.float64)
    post = mix.posterior(A, y, sigma_y)
    x = mix.sample(400_000, generator=g)
    log_w = -0.5 * ((y - x @ A.T) ** 2).sum(-1) / sigma_y**2
    mc_mean, se = importance_mean(x, log_w)
    assert torch.all((post.mean() - mc_mean).abs() < 5 * se + 1e-3)
    w = torch.softmax(log_w, 0)
    mc_cov = (w[:, None, None] * torch.einsum("ni,nj->nij", x - mc_mean, x - mc_mean)).sum(0)
    exact_samples = post.sample(200_000, generator=g)
    exact_cov = torch.cov(exact_samples.T)
    assert torch.allclose(exact_cov, mc_cov, atol=0.05)
    assert torch.allclose(mix.posterior_mean(A, y, sigma_y), post.mean(), atol=1e-12)


def test_denoiser_is_the_posterior_of_a_scaled_identity_measurement():
    mix = random_mixture(dim=4, k=2, seed=5)
    x_t = torch.randn(3, 4, dtype=torch.float64)
    alpha, sigma = 0.7, math.sqrt(1 - 0.49)
    den = mix.denoise(x_t, torch.full((3,), alpha, dtype=torch.float64), torch.full((3,), sigma, dtype=torch.float64))
    for i in range(3):
        expected = mix.posterior_mean(alpha * torch.eye(4, dtype=torch.float64), x_t[i], sigma)
        assert torch.allclose(den[i], expected, atol=1e-10)


def test_prior_predict_is_consistent_and_counts_calls():
    mix = random_mixture(dim=12, k=2, seed=6)
    prior = GMMPrior(mix, (3, 2, 2), VPSchedule.linear(1000), name="toy")
    x_t = torch.randn(5, 3, 2, 2)
    t = torch.tensor([0, 10, 500, 900, 999])
    pred = prior.predict(x_t, t)
    recon = prior.schedule.alpha(t, x_t) * pred.x0 + prior.schedule.sigma(t, x_t) * pred.eps
    assert torch.allclose(recon, x_t, atol=1e-5)
    assert prior.counter.nfe == 1 and prior.counter.vjp == 0
    x_req = x_t.clone().requires_grad_(True)
    prior.predict(x_req, t).x0.sum().backward()
    assert prior.counter.nfe == 2 and prior.counter.vjp == 1
    with pytest.raises(ValueError, match="takes inputs of shape"):
        prior.predict(torch.randn(1, 3, 4, 4), 0)


def test_isotropic_conditioning_shortcut_equals_the_dense_formulas():
    g = torch.Generator().manual_seed(7)
    k, dim = 4, 6
    means = 3.0 * torch.randn(k, dim, generator=g, dtype=torch.float64)
    lam = torch.rand(k, generator=g, dtype=torch.float64) + 0.5  # a different lambda_k I per component
    evecs = torch.linalg.qr(torch.randn(k, dim, dim, generator=g, dtype=torch.float64))[0]
    mix = GaussianMixture(torch.rand(k, generator=g, dtype=torch.float64) + 0.1, means,
                          lam[:, None].expand(k, dim).clone(), evecs)
    dense = GaussianMixture(mix.weights, mix.means, mix.evals, mix.evecs)
    dense.isotropic = False
    assert mix.isotropic
    A = torch.randn(2, dim, generator=g, dtype=torch.float64)
    y = torch.randn(2, generator=g, dtype=torch.float64)
    for fast, slow in zip(mix.posterior_moments(A, y, 0.3), dense.posterior_moments(A, y, 0.3)):
        assert torch.allclose(fast, slow, atol=1e-12)


def test_a_noiseless_rank_deficient_measurement_conditions_on_the_range_of_A():
    """Regression (found running reddiff_deblur_gauss, whose forward operator zeroes small singular
    values, with sigma_y = 0): A Sigma A^T was singular and the exact posterior refused. The
    measurement is the same as its coordinates in A's range: the posterior must equal that one's."""
    g = torch.Generator().manual_seed(0)
    d = 4
    means = torch.randn(2, d, generator=g, dtype=torch.float64)
    mix = GaussianMixture(torch.tensor([0.3, 0.7], dtype=torch.float64), means,
                          torch.tensor([[1.0, 0.5, 2.0, 0.3], [0.7, 1.5, 0.2, 1.0]], dtype=torch.float64),
                          torch.eye(d, dtype=torch.float64)[None].repeat(2, 1, 1))
    reduced = torch.tensor([[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]], dtype=torch.float64)
    x = torch.randn(d, generator=g, dtype=torch.float64)
    # three rows spanning the same 2-D range (one a combination of the others): singular without noise
    redundant = torch.cat([reduced, (reduced[0] + 2 * reduced[1])[None]])
    w1, m1, c1 = mix.posterior_moments(reduced, reduced @ x, 0.0)
    w2, m2, c2 = mix.posterior_moments(redundant, redundant @ x, 0.0)
    assert torch.allclose(w1, w2, atol=1e-10) and torch.allclose(m1, m2, atol=1e-10)
    assert torch.allclose(c1, c2, atol=1e-10)
    # a zero row measures nothing: the posterior is the prior
    w0, m0, _ = mix.posterior_moments(torch.zeros(1, d, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), 0.0)
    assert torch.allclose(w0, mix.weights) and torch.allclose(m0, mix.means)


def test_prior_nll_is_the_exact_negative_log_density_per_dimension_for_any_operator():
    """Issue 23: the trade-off's perception side was a second fidelity measure (the distance to the
    posterior mean). The realism measure is the exact prior NLL (nats/dim) of the output, for point
    estimates and samples, next to the ground truth's; the average of two far modes scores far worse
    than either mode."""
    from types import SimpleNamespace

    from reddiff_bench.metrics.posterior import posterior_metrics
    from reddiff_bench.operators import RandomPixelInpainting

    g = torch.Generator().manual_seed(0)
    d = 12
    means = torch.stack([torch.full((d,), 3.0), torch.full((d,), -3.0)]).double()
    covariances = 0.1 * torch.eye(d, dtype=torch.float64).expand(2, d, d)
    mixture = GaussianMixture.from_covariances(torch.tensor([0.5, 0.5], dtype=torch.float64), means, covariances)
    prior = GMMPrior(mixture, (3, 2, 2), VPSchedule.linear(1000), "two_modes")
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.tensor([0.5, 0.5], dtype=torch.float64)),
        torch.distributions.MultivariateNormal(means, covariances))
    x = means[0].reshape(3, 2, 2).float()
    samples = mixture.sample(4, g).reshape(4, 3, 2, 2).float()
    degradation = RandomPixelInpainting(0.5)
    op = degradation.operator({k: v[None] for k, v in degradation.sample_artifacts((3, 2, 2), g).items()}, (3, 2, 2))
    y = op(x[None])[0]
    out = posterior_metrics(prior, op, y, samples, x, sigma_y=0.1, seed=0, task_name="t", image_id="i",
                            sw_projections=100)
    expected = -reference.log_prob(samples.double().reshape(4, -1)).mean() / d
    assert out["prior_nll"] == pytest.approx(float(expected), rel=1e-9)
    assert out["prior_nll_truth"] == pytest.approx(float(-reference.log_prob(means[:1]) / d), rel=1e-9)
    between = torch.zeros(1, 3, 2, 2)  # the average of the two modes
    far = posterior_metrics(prior, op, y, between, x, sigma_y=0.1, seed=0, task_name="t", image_id="i",
                            sw_projections=100)
    assert far["prior_nll"] > out["prior_nll_truth"] + 10 and "mse_to_post_mean" in far
    nonlinear = SimpleNamespace(linear=False)  # no exact posterior: the prior's density still judges the output
    assert set(posterior_metrics(prior, nonlinear, y, between, x, sigma_y=0.1, seed=0, task_name="t", image_id="i",
                                 sw_projections=100)) == {"prior_nll", "prior_nll_truth"}


def test_fractional_timesteps_interpolate_log_abar_and_map_ve_noise_levels_back():
    """Continuous noise levels (latent DAPS): a fractional t interpolates log abar between
    integers (abar = 1 at t = -1); integer-valued fractional t read the table; a VE level sigma
    maps to the t whose abar is 1 / (1 + sigma^2); levels outside the schedule are refused."""
    schedule = VPSchedule.linear()
    assert torch.allclose(schedule.abar_t(torch.tensor([5.0, 999.0])), schedule.abar[[5, 999]], rtol=1e-12)
    middle = schedule.abar_t(torch.tensor(5.5))
    assert torch.allclose(middle, (schedule.abar[5] * schedule.abar[6]).sqrt(), rtol=1e-12)
    assert float(schedule.abar_t(torch.tensor(-1.0))) == 1.0
    for sigma in (0.0, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0):
        t = schedule.fractional_timestep(sigma)
        assert -1 <= float(t) <= 999
        assert math.isclose(float(schedule.abar_t(t)), 1 / (1 + sigma**2), rel_tol=1e-9)
    assert float(schedule.fractional_timestep(((1 - schedule.abar[300]) / schedule.abar[300]).sqrt())) == \
        pytest.approx(300, abs=1e-6)
    with pytest.raises(ValueError, match="outside this schedule's range"):
        schedule.fractional_timestep(1e3)
    with pytest.raises(ValueError, match=r"fractional timesteps must lie in \[-1, 999\]"):
        schedule.abar_t(torch.tensor(999.5))


def test_a_prior_predicts_at_fractional_timesteps_with_the_interpolated_abar():
    """The exact Gaussian denoiser at a continuous noise level: predict at the fractional
    timestep of sigma gives E[x0 | x0 + sigma e] for x0 ~ N(mu, I)."""
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    mix = GaussianMixture(torch.ones(1, dtype=torch.float64), mu[None], torch.ones(1, 2, dtype=torch.float64),
                          torch.eye(2, dtype=torch.float64)[None])
    prior = GMMPrior(mix, (2,), VPSchedule.linear(), "g")
    z = torch.tensor([[0.3, 4.0], [-5.0, 2.0]], dtype=torch.float64)
    for sigma in (0.005, 0.7, 12.0):
        t = prior.schedule.fractional_timestep(sigma)
        x0 = prior.predict(z / math.sqrt(1 + sigma**2), t).x0
        assert torch.allclose(x0, mu + (z - mu) / (1 + sigma**2), atol=1e-9)
