"""The peers' solvers (issue 17): DDNM, DiffPIR, DAPS and MCGdiff against the exact posterior of a
Gaussian prior and of a Gaussian mixture; their costs; their refusals. (RED-Diff parallel is
tested with RED-Diff, in test_reddiff.py.)"""

from __future__ import annotations

import pytest
import torch

from reddiff_bench.diffusion import SampleStream, make_generator
from reddiff_bench.metrics.distribution import sliced_wasserstein
from reddiff_bench.operators.base import Operator
from reddiff_bench.priors.gmm import grid_gmm_prior
from reddiff_bench.solvers import DAPS, DDIM, DDNM, DiffPIR, MCGdiff
from reddiff_bench.solvers.daps import edm_sigmas, nearest_timesteps

from .test_solvers import gaussian_prior, problem

N = 400


def draw(solver, prior, op, y, sigma_y, n=N, seed=1):
    stream = SampleStream(make_generator(seed, "sample"), n)
    return solver.solve(prior, op, y.expand(n, -1), sigma_y=sigma_y, generators=stream).x0.double()


def moments_error(out, post_mean, post_cov):
    """Largest |mean error| in posterior stds, and the covariance's relative Frobenius error."""
    mean_error = ((out.mean(0) - post_mean).abs() / post_cov.diagonal().sqrt()).max()
    cov_error = (torch.cov(out.T) - post_cov).norm() / post_cov.norm()
    return float(mean_error), float(cov_error)


def gaussian_problem(sigma_y: float = 0.1):
    prior = gaussian_prior()
    op, y, _, _ = problem(prior, 2, sigma_y, seed=0)
    post = prior.reference[0].posterior(op.A[0].double(), y[0].double(), sigma_y)
    return prior, op, y, post.means[0], post.covariances()[0]


# (solver, mean tolerance in posterior stds, covariance tolerance): measured with N = 2000 samples
# (max mean error, covariance error): MCGdiff (32 particles) 0.05, 0.09; DDNM+ 0.08, 0.30;
# DiffPIR at lam 1, zeta 0.3: 0.04, 0.13 (its defaults, lam 8 and zeta 1, tuned on images: 0.40,
# 0.55; lam sets the bias: 0.02 at lam 1, 0.77 at lam 32, zeta 1 inflates the covariance); DAPS
# (100 levels, 50 Langevin steps) 0.06, 0.26. With N = 400 the Monte Carlo error adds ~0.1 std to
# the mean and ~0.1 to the covariance. The prior alone (DDIM) misses the mean by ~1.2 stds: every
# mean tolerance below is under a third of that.
SAMPLERS = [
    (MCGdiff(particles=32), 0.25, 0.2),
    (DDNM(), 0.3, 0.45),
    (DiffPIR(lam=1.0, zeta=0.3), 0.25, 0.3),
    (DAPS(annealing_steps=100, langevin_steps=50), 0.3, 0.4),
]


@pytest.mark.parametrize("solver,mean_tol,cov_tol", SAMPLERS, ids=[type(s[0]).__name__ for s in SAMPLERS])
def test_sample_moments_agree_with_the_exact_gaussian_posterior(solver, mean_tol, cov_tol):
    """Gaussian prior N(mu, I) in d = 4, two noisy measurements (sigma_y = 0.1): the exact
    posterior is Gaussian; each sampler's sample mean and covariance against it."""
    prior, op, y, mean, cov = gaussian_problem()
    mean_error, cov_error = moments_error(draw(solver, prior, op, y, 0.1), mean, cov)
    assert mean_error < mean_tol and cov_error < cov_tol, (mean_error, cov_error)
    prior_only, _ = moments_error(draw(DDIM(), prior, op, y, 0.1), mean, cov)
    assert prior_only > 3 * mean_tol  # the tolerance separates a posterior sampler from the prior


def test_noiseless_ddnm_and_mcgdiff_reproduce_the_measurement():
    """sigma_y = 0: DDNM replaces the range-space part by A^+ y; MCGdiff pins the measured
    coordinates to within kappa's noise: A x = y for every sample."""
    prior, op, y, _, _ = gaussian_problem(0.0)
    for solver in (DDNM(), MCGdiff(particles=4)):
        out = draw(solver, prior, op, y, 0.0, n=50).float()
        assert torch.allclose(op(out), y.expand(50, -1), atol=0.03), (type(solver).__name__, (op(out) - y).abs().max())


@pytest.mark.slow
def test_mcgdiff_error_shrinks_as_particles_grow():
    """Grid mixture (25 modes) in d = 8, d_y = 2, sigma_y = 0.1, 4 problems: the posterior's mass
    sits on a few modes whose weights one guided particle cannot get right; the SMC's resampling
    does, as the particles grow. Mean SW distance to the exact posterior (measured: 9.4 with 1
    particle, 9.0 with 4, 6.3 with 32, 4.9 with 64, 3.6 with 128; PiGDM 2.4). On a two-mode mixture in 1-D
    where one guided particle already finds the mode weights (0.72 vs the exact 0.71),
    resampling keeps them (0.71 with 64 particles)."""
    prior = grid_gmm_prior(8)
    distances: dict[int, list[float]] = {1: [], 64: []}
    for seed in range(10, 14):
        op, y, exact, _ = problem(prior, 2, 0.1, seed)
        for particles in distances:
            out = draw(MCGdiff(particles=particles), prior, op, y, 0.1, seed=seed)
            distances[particles].append(sliced_wasserstein(out, exact, 500, torch.Generator().manual_seed(0)))
    one, many = (sum(v) / len(v) for v in distances.values())
    assert many < 0.75 * one, (one, many)


@pytest.mark.parametrize("solver,sigma_y,nfe,vjp", [
    (DDNM(steps=30), 0.1, 30, 0),
    (DiffPIR(steps=30), 0.1, 30, 0),
    (DAPS(annealing_steps=6, ode_steps=3, langevin_steps=4), 0.1, 6 * 3, 0),
    # noiseless: the 30 steps of the grid alone, 5 particles on the 29 transitions, one final call
    (MCGdiff(steps=30, particles=5), 0.0, 5 * 29 + 1, 0),
    # sigma_y = 0.1 and two singular values: two measurement levels sigma_y / s_i, each a timestep
    # between the grid's 30, join it (32 steps, 31 transitions)
    (MCGdiff(steps=30, particles=5), 0.1, 5 * 31 + 1, 0),
], ids=["ddnm", "diffpir", "daps", "mcgdiff-noiseless", "mcgdiff-noisy"])
def test_cost_counts(solver, sigma_y, nfe, vjp):
    """NFE per output sample, counted by the prior: one per step; DAPS: its ODE steps at each
    level; MCGdiff: one per particle and transition of its grid (the steps plus the measurement's
    noise levels), plus the final denoising. No solver backpropagates through the network
    (DAPS's Langevin steps differentiate the operator only)."""
    prior = gaussian_prior()
    op, y, _, _ = problem(prior, 2, sigma_y, seed=0)
    prior.counter.reset()
    solver.solve(prior, op, y.expand(3, -1), sigma_y=sigma_y, generators=[make_generator(0, j) for j in range(3)])
    assert (prior.counter.nfe, prior.counter.vjp) == (nfe, vjp)


def test_daps_annealing_levels_follow_edm_and_map_to_distinct_timesteps():
    sigmas = edm_sigmas(100.0, 0.1, 200)
    assert sigmas[0] == pytest.approx(100.0) and sigmas[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(sigmas, sigmas[1:]))
    schedule = gaussian_prior().schedule
    ts = nearest_timesteps(schedule, sigmas)
    assert ts == sorted(set(ts), reverse=True)
    levels = ((1 - schedule.abar) / schedule.abar).sqrt()  # the linear schedule tops at ~157
    assert float(levels[ts[0]]) == pytest.approx(100.0, rel=0.02)
    assert float(levels[ts[-1]]) == pytest.approx(0.1, rel=0.1)


def test_svd_solvers_refuse_other_operators_before_any_work():
    class Square(Operator):
        def forward(self, x):
            return x**2

    for solver in (DDNM(), MCGdiff()):
        with pytest.raises(ValueError, match="SVD"):
            solver.check(Square())


@pytest.mark.parametrize("factory,message", [
    (lambda: MCGdiff(particles=0), "solver.particles"),
    (lambda: DAPS(sigma_min=200.0), "sigma_min"),
    (lambda: DiffPIR(zeta=2.0), "solver.zeta"),
    (lambda: DDNM(eta=float("nan")), "solver.eta"),
])
def test_bad_options_are_refused_with_the_key(factory, message):
    with pytest.raises((ValueError, TypeError), match=message):
        factory()
