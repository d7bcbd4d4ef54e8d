"""The baseline solvers against exact posteriors, and the contract every solver keeps."""

from __future__ import annotations

import copy

import pytest
import torch

from reddiff_bench.diffusion import SampleStream, VPSchedule, make_generator
from reddiff_bench.metrics.distribution import sliced_wasserstein
from reddiff_bench.operators import BoxInpainting, DenseOperator, RandomMatrix
from reddiff_bench.priors.gmm import GaussianMixture, GMMPrior, grid_gmm_prior
from reddiff_bench.solvers import DDIM, DDRM, DPS, PiGDM, PseudoInverse, REDDiff
from reddiff_bench.tasks import GaussianNoise, Task

N = 400


def gaussian_prior(d: int = 4) -> GMMPrior:
    """N(mu, I): PiGDM's approximation p(x0 | x_t) = N(x0_hat, (1 - abar_t) I) is exact for it."""
    mu = torch.tensor([1.0, -0.5, 0.3, 2.0], dtype=torch.float64)[:d]
    mix = GaussianMixture(torch.ones(1, dtype=torch.float64), mu[None], torch.ones(1, d, dtype=torch.float64),
                          torch.eye(d, dtype=torch.float64)[None])
    return GMMPrior(mix, (d,), VPSchedule.linear(), "gaussian")


def problem(prior, d_y: int, sigma_y: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    d = prior.image_shape[0]
    A = RandomMatrix(d_y).sample_artifacts((d,), g)["A"]
    op = DenseOperator(A)
    x = prior.reference[0].sample(1, g).float()
    y = op(x) + sigma_y * torch.randn(1, d_y, generator=g)
    exact, weights, means = prior.exact_posterior_samples(A, y[0], sigma_y, N, g)
    return op, y, exact, weights @ means


def samples(solver, prior, op, y, sigma_y, seed=1):
    stream = SampleStream(make_generator(seed, "sample"), N)
    return solver.solve(prior, op, y.expand(N, -1), sigma_y=sigma_y, generators=stream).x0.double()


@pytest.mark.parametrize("solver,tolerance", [(PiGDM(), None), (DDRM(), 0.3), (DPS(), 0.3)], ids=["pgdm", "ddrm",
                                                                                                  "dps"])
def test_sample_means_agree_with_the_exact_posterior_mean(solver, tolerance):
    """Gaussian prior, two noisy measurements (sigma_y = 0.1). PiGDM is exact here up to
    discretisation: its sample mean must lie within 4 Monte Carlo standard errors of the exact
    mean. DDRM and DPS are approximations (measured biases ~0.12 and ~0.15 posterior std): their
    means must lie within 0.3 posterior std, while the prior alone (DDIM) misses by ~1.2 std."""
    prior = gaussian_prior()
    op, y, exact, post_mean = problem(prior, 2, 0.1, seed=0)
    out = samples(solver, prior, op, y, 0.1)
    post_std = exact.std(0)
    error = (out.mean(0) - post_mean).abs()
    if tolerance is None:
        assert torch.all(error < 4 * out.std(0) / N**0.5), error
        assert torch.allclose(out.std(0), post_std, rtol=0.15)
    else:
        assert torch.all(error < tolerance * post_std), error / post_std
    prior_only = samples(DDIM(), prior, op, y, 0.1)
    assert ((prior_only.mean(0) - post_mean).abs() / post_std).max() > 0.8  # the test can fail


@pytest.mark.slow
def test_sampling_solvers_beat_the_prior_in_sliced_wasserstein():
    """Grid mixture in d = 8, d_y = 2, sigma_y = 0.1, 4 problems: each sampler's mean SW distance
    to the exact posterior is at most 0.8 of unconditional DDIM's (measured: DPS ~0.6, DDRM ~0.6,
    PiGDM ~0.2 of DDIM's)."""
    prior = grid_gmm_prior(8)
    distances: dict[str, list[float]] = {}
    for seed in range(10, 14):
        op, y, exact, _ = problem(prior, 2, 0.1, seed)
        for name, solver in {"ddim": DDIM(), "dps": DPS(), "pgdm": PiGDM(), "ddrm": DDRM()}.items():
            out = samples(solver, prior, op, y, 0.1, seed)
            distances.setdefault(name, []).append(sliced_wasserstein(out, exact, 500, torch.Generator().manual_seed(0)))
    mean = {k: sum(v) / len(v) for k, v in distances.items()}
    for name in ("dps", "pgdm", "ddrm"):
        assert mean[name] < 0.8 * mean["ddim"], mean


def test_pgdm_noise_term_weakens_the_guidance_as_its_formula_predicts():
    """(r^2 A A^T + sigma_y^2 I)^-1 shrinks with sigma_y: on the same y and seeds, PiGDM told
    sigma_y = 0.5 fits y less tightly and stays closer to the prior mean than when told 0.05; and
    for the Gaussian prior its sample mean follows the exact posterior mean of each sigma_y."""
    prior = gaussian_prior()
    op, y, _, _ = problem(prior, 2, 0.05, seed=3)
    A = op.A[0]
    prior_mean = prior.reference[0].mean()
    fits, to_prior = {}, {}
    for sigma in (0.05, 0.5):
        out = samples(PiGDM(), prior, op, y, sigma)
        fits[sigma] = float((y.double() - out @ A.T).norm(dim=-1).mean())
        to_prior[sigma] = float((out.mean(0) - prior_mean).norm())
        exact_mean = prior.exact_posterior_mean(A, y[0], sigma)
        assert torch.all((out.mean(0) - exact_mean).abs() < 4 * out.std(0) / N**0.5 + 0.02)
    assert fits[0.5] > 1.5 * fits[0.05]
    assert to_prior[0.5] < to_prior[0.05]


def test_gram_solve_interpolates_between_pinv_and_zero():
    A = RandomMatrix(3).sample_artifacts((6,), torch.Generator().manual_seed(0))["A"]
    op = DenseOperator(A).double()
    r = torch.randn(2, 3, dtype=torch.float64)
    exact = torch.linalg.solve(0.3 * A @ A.T + 0.2 * torch.eye(3, dtype=torch.float64), r.T).T
    assert torch.allclose(op.gram_solve(r, 0.3, 0.2), exact)
    assert op.gram_solve(r, 0.3, 1e8).abs().max() < 1e-6


def test_solvers_without_an_svd_are_refused_before_any_work():
    from reddiff_bench.operators.base import Operator

    class Square(Operator):
        def forward(self, x):
            return x**2

    for solver in (DDRM(), PiGDM()):
        with pytest.raises(ValueError, match="SVD"):
            solver.check(Square())


ALL_SOLVERS = [REDDiff(steps=20), DPS(steps=20), PiGDM(steps=20), DDRM(steps=10), DDIM(steps=20, eta=1.0),
               PseudoInverse()]


@pytest.mark.parametrize("solver", ALL_SOLVERS, ids=lambda s: type(s).__name__)
def test_every_solver_gives_an_image_the_same_result_alone_or_in_a_batch(photo_prior, photo_batch, solver):
    """In float64, where sums in another order (another batch size, another thread count) differ
    by about 1e-16: an image alone and in a batch of four agree to 1e-9, so no solver couples the
    images of a batch. In float32 those rounding differences are amplified by the solvers'
    iterations (DPS: up to 1e-2 after 20 steps with one thread), which says nothing about coupling."""
    prior = copy.deepcopy(photo_prior).double()
    ids, x = photo_batch
    x = x.double()
    task = Task("inpaint_box", BoxInpainting(0.5), GaussianNoise(0.05))
    shape = tuple(x.shape[1:])
    artifacts = [task.sample_artifacts(shape, make_generator(0, "artifacts", i)) for i in ids]
    op = task.operator(artifacts, shape).double()
    y = task.measure(op, x, [make_generator(0, "noise", i) for i in ids])
    gens = lambda names: [make_generator(0, "solver", i) for i in names]  # noqa: E731
    batched = solver.solve(prior, op, y, sigma_y=0.05, generators=gens(ids)).x0
    assert batched.dtype == torch.float64
    for k in range(len(ids)):
        alone = solver.solve(prior, task.operator([artifacts[k]], shape).double(), y[k : k + 1], sigma_y=0.05,
                             generators=gens(ids[k : k + 1])).x0
        assert torch.allclose(alone[0], batched[k], rtol=0, atol=1e-9), (alone[0] - batched[k]).abs().max()


@pytest.mark.parametrize("solver,nfe,vjp", [(DPS(steps=30), 30, 30), (PiGDM(steps=30), 30, 30),
                                            (DDRM(steps=30), 30, 0), (DDIM(steps=30), 30, 0)],
                         ids=["dps", "pgdm", "ddrm", "ddim"])
def test_cost_counts(solver, nfe, vjp):
    prior = gaussian_prior()
    op, y, _, _ = problem(prior, 2, 0.1, seed=0)
    prior.counter.reset()
    solver.solve(prior, op, y.expand(3, -1), sigma_y=0.1, generators=[make_generator(0, j) for j in range(3)])
    assert (prior.counter.nfe, prior.counter.vjp) == (nfe, vjp)


def test_a_sample_stream_draws_the_samples_of_one_image_from_one_generator():
    """n samples of one image share a generator: one (n, ...) draw per step, reproducible from the
    seed, distinct rows; a list of generators (one per row) draws row by row."""
    from reddiff_bench.diffusion import randn_per_sample

    like = torch.zeros(1)
    stream = SampleStream(make_generator(0, "solver", "img"), 5)
    assert len(stream) == 5 and stream[4] is stream[0] and len(stream[1:3]) == 2
    with pytest.raises(IndexError):
        stream[5]
    draw = randn_per_sample(stream, (3,), like)
    again = randn_per_sample(SampleStream(make_generator(0, "solver", "img"), 5), (3,), like)
    assert torch.equal(draw, again) and draw.shape == (5, 3)
    assert torch.equal(draw, torch.randn((5, 3), generator=make_generator(0, "solver", "img")))
    assert torch.unique(draw[:, 0]).numel() == 5
    rows = randn_per_sample([make_generator(0, "solver", "img"), make_generator(1, "solver", "img")], (3,), like)
    assert torch.equal(rows[0], torch.randn(3, generator=make_generator(0, "solver", "img")))
