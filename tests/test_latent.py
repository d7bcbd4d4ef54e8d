"""Latent priors and latent solvers (issue 25): the exact linear-decoder track, each latent
solver against its exact posterior (and failing without its data term), cost counting of the
autoencoder, the refusal of mismatched solver and prior, and the runs through the pipeline."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
import torch

from reddiff_bench.cli.estimate import main as estimate_main
from reddiff_bench.diffusion import SampleStream, VPSchedule, make_generator
from reddiff_bench.errors import ConfigError
from reddiff_bench.metrics.distribution import sliced_wasserstein
from reddiff_bench.operators import BoxInpainting, DenseOperator, PhaseRetrieval
from reddiff_bench.priors.gmm import GaussianMixture, GMMPrior
from reddiff_bench.priors.latent import (
    LinearAutoencoder,
    LinearGMMLatentPrior,
    ldm_prior,
    linear_gmm_pixel_prior,
    linear_gmm_prior,
    push_forward,
    random_ldm_prior,
    random_sd_prior,
    stable_diffusion_prior,
)
from reddiff_bench.run.pipeline import run
from reddiff_bench.run.settings import check_spaces
from reddiff_bench.solvers import DDIM, PSLD, LatentDAPS, LatentDPS, LatentREDDiff, ReSample
from reddiff_bench.solvers import latent_daps as latent_daps_module
from reddiff_bench.solvers import psld as psld_module
from reddiff_bench.solvers import resample as resample_module
from reddiff_bench.solvers.latent import DecodedOperator, fit_per_image
from reddiff_bench.solvers.sampling import ldm_pairs
from reddiff_bench.study.estimate import seconds_per_call
from reddiff_bench.tasks import GaussianNoise, Task

from .conftest import REPO
from .helpers import compose_config

FIXTURES = REPO / "tests" / "fixtures"

N = 400
SIGMA_Y = 0.1


def latent_problem(seed: int = 0, k: int = 3, d: int = 6, m: int = 2):
    """A Gaussian prior N(mu, I) over z in R^3, a random linear decoder to R^6 (full column rank),
    two noisy measurements of x: the exact posterior of z is Gaussian."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, k, generator=g, dtype=torch.float64)
    b = 0.3 * torch.randn(d, generator=g, dtype=torch.float64)
    mu = torch.tensor([1.0, -0.5, 0.3], dtype=torch.float64)[:k]
    mix = GaussianMixture(torch.ones(1, dtype=torch.float64), mu[None], torch.ones(1, k, dtype=torch.float64),
                          torch.eye(k, dtype=torch.float64)[None])
    prior = LinearGMMLatentPrior(GMMPrior(mix, (k,), VPSchedule.linear(), "z"), LinearAutoencoder(W, b, (k,), (d,)),
                                 push_forward(mix, W, b), "linear")
    A = torch.randn(m, d, generator=g, dtype=torch.float64)
    op = DenseOperator(A)
    x = (W @ mix.sample(1, g)[0] + b).float()[None]
    y = op(x) + SIGMA_Y * torch.randn(1, m, generator=g)
    return prior, op, y, prior.latent_posterior(A, y[0], SIGMA_Y)


def latents(solver, prior, op, y, n=N):
    stream = SampleStream(make_generator(1, "sample"), n)
    out = solver.solve(prior, op, y.expand(n, -1), sigma_y=SIGMA_Y, generators=stream).x0
    return prior.autoencoder.encode(out).double()


def mean_error(z, post) -> float:
    """The largest |sample mean - posterior mean| in posterior standard deviations."""
    cov = post.covariances()[0]
    return float(((z.mean(0) - post.means[0]).abs() / cov.diagonal().sqrt()).max())


# (solver, the same with its data term off, mean tolerance in posterior stds, SW2 tolerance or None).
# Measured (N = 400, seed 0): mean error in posterior stds / covariance relative error / SW2 to
# 400 exact samples (the prior alone: 9.2 stds, SW2 0.79):
#   latent DPS (200 steps)                      0.11 / 1.84 / 0.57   (DPS's collapse of the spread)
#   PSLD (200 steps, omega 0.3, gamma 0.1)      0.85 / 0.17 / 0.21   (omega 1, its default: 2.2 stds)
#   ReSample (100 steps, 200/100 iterations)    0.08 / 0.22 / 0.08
#   latent DAPS (25 levels, 30 HMC steps,       0.32 / 0.04 / 0.21   (the code's tau = sqrt(2) sigma_y: its
#     lr 3e-3, tau sqrt(2) sigma_y)                                    likelihood has no 1/2; the last level,
#                                                                      sigma 0.12, and N(z0_hat, sigma^2) bias it)
#   latent RED-Diff (100 steps)                 0.04 / 0.99 / 0.52   (a point estimate: no spread)
# The data term off (zeta 0; omega = gamma = 0; no DPS step and no optimisation; tau 1e6;
# obs_weight 0): every one misses by 9 to 10.3 stds (SW2 0.71 to 0.79). SW2 is checked for the
# samplers whose spread is right; it cannot separate a collapsed spread from the prior.
CASES = {
    "latent_dps": (LatentDPS(steps=200), LatentDPS(steps=200, zeta=0.0), 0.3, None),
    "latent_psld": (PSLD(steps=200, omega=0.3), PSLD(steps=200, omega=0.0, gamma=0.0), 1.2, 0.3),
    "latent_resample": (ReSample(steps=100, pixel_iters=200, latent_iters=100, window=50),
                 ReSample(steps=100, dps_scale=0.0, pixel_iters=0, latent_iters=0), 0.3, 0.15),
    "latent_daps": (LatentDAPS(annealing_steps=25, mcmc_steps=30, lr=3e-3, tau=2**0.5 * SIGMA_Y),
                    LatentDAPS(annealing_steps=25, mcmc_steps=30, lr=3e-3, tau=1e6), 0.5, 0.3),
    "latent_reddiff": (LatentREDDiff(steps=100), LatentREDDiff(steps=100, obs_weight=0.0), 0.3, None),
}


SLOW_CASES = {"latent_dps"}  # 1000-step-like cost here (10 s): in the slow suite, to keep `make test` under 5 minutes


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CASES else n for n in CASES])
def test_each_latent_solver_finds_the_exact_latent_posterior_and_misses_it_without_its_data_term(name):
    solver, data_off, tol, sw_tol = CASES[name]
    prior, op, y, post = latent_problem()
    z = latents(solver, prior, op, y)
    error = mean_error(z, post)
    exact = post.sample(N, torch.Generator().manual_seed(2))
    sw = sliced_wasserstein(z, exact, 500, torch.Generator().manual_seed(0))
    assert error < tol, (name, error)
    if sw_tol is not None:
        assert sw < sw_tol, (name, sw)
    z_off = latents(data_off, prior, op, y)
    off = mean_error(z_off, post)
    assert off > 3 * tol, (name, off)  # without its data term the solver is the prior, and the test sees it
    if sw_tol is not None:
        assert sliced_wasserstein(z_off, exact, 500, torch.Generator().manual_seed(0)) > 2 * sw_tol


def test_the_prior_alone_misses_the_latent_posterior():
    prior, op, y, post = latent_problem()
    z = DDIM().solve(prior.latent, DecodedOperator(op, prior), y.expand(N, -1), sigma_y=SIGMA_Y,
                     generators=SampleStream(make_generator(1, "sample"), N)).x0.double()
    assert mean_error(z, post) > 5


def test_the_pixel_posterior_is_the_latent_posterior_pushed_through_the_decoder():
    """Exact in both spaces: E[x | y] = W E[z | y] + b, and the pixel view of the photo track
    has covariances of the latent rank."""
    prior, op, y, post = latent_problem()
    A = op.A[0]
    pixel_mean = prior.exact_posterior_mean(A, y[0], SIGMA_Y)
    W, b = prior.autoencoder.W.double(), prior.autoencoder.b.double()
    latent_mean = post.weights @ post.means
    assert torch.allclose(pixel_mean, W @ latent_mean + b, atol=1e-4)


def test_the_photo_latent_track_decodes_its_encodings_and_its_pixel_view_is_the_same_prior(tmp_path):
    latent = linear_gmm_prior(cache_dir=tmp_path, n_crops=400, max_iter=5, n_components=2)
    pixel = linear_gmm_pixel_prior(cache_dir=tmp_path, n_crops=400, max_iter=5, n_components=2)
    assert latent.space == "latent" and pixel.space == "pixel"
    assert latent.image_shape == pixel.image_shape == (3, 16, 16) and latent.latent_shape == (4, 4, 4)
    z = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(latent.encode(latent.decode(z)), z, atol=1e-4)
    ranks = (pixel.reference[0].evals > 1e-9).sum(1)
    assert bool((ranks == 64).all()), ranks
    # the pixel view's mixture is the latent mixture pushed through the decoder: same means
    W, b = latent.autoencoder.W.double(), latent.autoencoder.b.double()
    assert torch.allclose(pixel.reference[0].means, latent.latent.reference[0].means @ W.T + b, atol=1e-6)


def test_decoder_and_encoder_passes_and_their_vjps_are_counted_per_call():
    prior, op, y, _ = latent_problem()
    prior.counter.reset()
    LatentDPS(steps=7).solve(prior, op, y.expand(3, -1), sigma_y=SIGMA_Y,
                             generators=[make_generator(0, j) for j in range(3)])
    # one network call and one decoder pass per step, each differentiated; one final decoding
    assert prior.counter.columns() == dict(nfe=7, vjp=7, decoder_calls=8, decoder_vjp=7, encoder_calls=0,
                                           encoder_vjp=0)
    prior.counter.reset()
    PSLD(steps=5).solve(prior, op, y, sigma_y=SIGMA_Y, generators=[make_generator(0)])
    # the gluing term adds one encoder pass (and its VJP) and a second decoder VJP path per step
    assert prior.counter.columns() == dict(nfe=5, vjp=5, decoder_calls=6, decoder_vjp=5, encoder_calls=5,
                                           encoder_vjp=5)


def test_per_image_optimisation_does_not_depend_on_the_batch():
    target = torch.tensor([[1.0, 2.0], [-3.0, 0.5]])
    loss = lambda p: ((p - target[: p.shape[0]]) ** 2).mean(-1)  # noqa: E731
    both = fit_per_image(torch.zeros(2, 2), loss, 0.1, 300, 1e-6)
    alone = fit_per_image(torch.zeros(1, 2), loss, 0.1, 300, 1e-6)
    assert torch.equal(both[:1], alone)
    assert torch.allclose(both, target, atol=0.05)


@pytest.mark.parametrize("solver,model,fits", [
    ("reddiff", "gmm_latent", "latent_dps"), ("latent_dps", "gmm_photos", "reddiff")])
def test_a_pixel_solver_on_a_latent_prior_and_the_reverse_are_refused_naming_the_solvers_that_fit(solver, model,
                                                                                                    fits):
    cfg = compose_config([f"solver={solver}", f"model={model}", "task=inpaint_box", "dataset=photos"])
    with pytest.raises(ConfigError, match=f"Solvers for model {model!r}: .*{fits}"):
        check_spaces(cfg, solver, model)


def test_the_latent_solvers_refuse_a_pixel_prior_and_psld_a_nonlinear_operator():
    with pytest.raises(ValueError, match="latent solver"):
        LatentDPS(steps=2).solve(GMMPrior(GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2),
                                                          torch.eye(2)[None]), (2,), VPSchedule.linear(), "g"),
                                 DenseOperator(torch.eye(2)), torch.zeros(1, 2), sigma_y=0.1,
                                 generators=[make_generator(0)])
    with pytest.raises(ValueError, match="linear operator"):
        PSLD.check(PhaseRetrieval().operator([{}], (3, 16, 16)))


@pytest.mark.slow
def test_a_latent_run_goes_through_the_pipeline_logs_the_autoencoder_columns_and_resumes(tmp_path):
    overrides = ["model=gmm_latent", "solver=latent_reddiff", "solver.steps=10", "task=inpaint_box",
                 "dataset=photos", "dataset.num_images=2", "batch_size=1", "progress=false",
                 "model.n_crops=400", "model.max_iter=5", "model.n_components=2", f"paths.cache_dir={tmp_path}/cache"]
    run(compose_config(overrides, tmp_path / "run"), tmp_path / "run")
    rows = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(rows.status) == ["ok", "ok"]
    assert set(rows.decoder_calls) == {11} and set(rows.decoder_vjp) == {10} and set(rows.encoder_calls) == {1}
    assert rows.mse_to_post_mean.notna().all()  # the exact posterior, in pixel space
    first = rows.copy()
    # a second run finds its rows: nothing is solved again
    run(compose_config(overrides, tmp_path / "run"), tmp_path / "run")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run" / "metrics.csv"), first)


# One step (or the fewest that reach every branch) of each latent solver on the random-weight
# architectures at 64x64 latents: the shapes, the calls and the autoencoder passes.
ONE_STEP = {
    "latent_dps": (LatentDPS(steps=1), dict(nfe=1, vjp=1, decoder_calls=2, decoder_vjp=1)),
    "latent_psld": (PSLD(steps=1), dict(nfe=1, vjp=1, decoder_calls=2, decoder_vjp=1, encoder_calls=1,
                                        encoder_vjp=1)),
    # 2 steps, the first with a pixel-space data consistency (1 iteration) after 1 time-travel step,
    # then the final latent optimisation (1 iteration)
    "latent_resample": (ReSample(steps=2, every=1, travel=1, pixel_iters=1, latent_iters=1, window=1),
                        dict(nfe=3, vjp=2, decoder_calls=5, decoder_vjp=3, encoder_calls=1, encoder_vjp=0)),
    "latent_daps": (LatentDAPS(annealing_steps=1, ode_steps=1, mcmc_steps=1),
                    dict(nfe=1, vjp=0, decoder_calls=2, decoder_vjp=1)),
    "latent_reddiff": (LatentREDDiff(steps=1), dict(nfe=1, vjp=0, decoder_calls=2, decoder_vjp=1, encoder_calls=1,
                                                    encoder_vjp=0)),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ldm_random", "sd_random"])
def test_the_random_weight_latent_architectures_run_one_image_under_each_latent_solver(model):
    """LDM CelebA-HQ (VQ f4, 256-pixel images) and Stable Diffusion 1.x (KL f8, 512-pixel
    images), random weights, 64x64 latents, on the CPU: every latent solver returns a finite image
    of the right shape, and the prior counts its network calls and autoencoder passes. (Measured
    here: the LDM about 3 min for the five solvers; SD about 12 min and 12.6 GB resident: its
    decoder's backward pass at 512x512 dominates.)"""
    prior = (random_ldm_prior if model == "ldm_random" else random_sd_prior)(latent_size=64)
    side = prior.image_shape[-1]
    assert prior.latent_shape[-1] == 64 and side == (256 if model == "ldm_random" else 512)
    x = torch.rand(1, *prior.image_shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    task = Task("inpaint_box", BoxInpainting(0.5), GaussianNoise(0.05))
    op = task.operator([task.sample_artifacts(prior.image_shape, make_generator(0))], prior.image_shape)
    y = task.measure(op, x, [make_generator(1)])
    for name, (solver, counts) in ONE_STEP.items():
        prior.counter.reset()
        out = solver.solve(prior, op, y, sigma_y=0.05, generators=[make_generator(0, name)]).x0
        assert out.shape == (1, *prior.image_shape) and bool(torch.isfinite(out).all()), name
        columns = prior.counter.columns()
        assert {k: columns[k] for k in counts} == counts, (name, columns)


@pytest.mark.slow
def test_the_estimate_counts_the_autoencoder_passes_of_latent_jobs_and_times_them(capsys, tmp_path):
    """GPU-hours of latent jobs: the decoder and encoder passes per image come from a stand-in
    latent prior; their seconds are required (or measured), never taken as zero."""
    latent = ["model=gmm_latent", "dataset=photos", "solver=latent_dps,latent_psld", "task=inpaint_box"]
    base = ["--seconds-per-nfe", "0.01", "--seconds-per-vjp", "0.02"]
    assert estimate_main([*latent, *base]) == 2
    assert "--seconds-per-decoder-calls" in capsys.readouterr().err
    autoencoder = ["--seconds-per-decoder-calls", "0.05", "--seconds-per-decoder-vjp", "0.1",
                   "--seconds-per-encoder-calls", "0.03", "--seconds-per-encoder-vjp", "0.06"]
    assert estimate_main([*latent, *base, *autoencoder]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in out.splitlines()
            if "solver=" in line}
    # images, NFE, VJP, decoder calls and VJPs, encoder calls and VJPs; seconds per image
    assert rows["model=gmm_latent dataset=photos solver=latent_dps task=inpaint_box"][:8] == [
        "8", "1000", "1000", "1001", "1000", "0", "0", "180.1"]
    assert rows["model=gmm_latent dataset=photos solver=latent_psld task=inpaint_box"][:8] == [
        "8", "1000", "1000", "1001", "1000", "1000", "1000", "270.1"]
    cfg = compose_config(["model=gmm_latent", f"paths.cache_dir={tmp_path}", "model.n_crops=400", "model.max_iter=5",
                          "model.n_components=2"])
    seconds, _ = seconds_per_call(cfg, torch.device("cpu"), repeats=1)
    assert all(seconds[k] > 0 for k in ("nfe", "decoder_calls", "encoder_calls")), seconds


def tiny_pipeline(folder, conditional: bool):
    """A small latent pipeline written by save_pretrained: unet/, vqvae/ (or vae/ for the
    conditional one), scheduler/; 8x8 latents of 16x16 images."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel, UNet2DModel, VQModel  # heavy, optional

    torch.manual_seed(0)
    if conditional:
        UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                             block_out_channels=(32, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                             up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                             attention_head_dim=4, norm_num_groups=8).save_pretrained(folder / "unet")
        AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                      down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                      norm_num_groups=4, scaling_factor=0.5, sample_size=16).save_pretrained(folder / "vae")
    else:
        UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
                    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                    norm_num_groups=8, attention_head_dim=8).save_pretrained(folder / "unet")
        VQModel(in_channels=3, out_channels=3, latent_channels=3, block_out_channels=(8, 16),
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                norm_num_groups=4, num_vq_embeddings=32, vq_embed_dim=3,
                sample_size=16).save_pretrained(folder / "vqvae")
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.0015,
                  beta_end=0.0195).save_pretrained(folder / "scheduler")
    return folder


@pytest.mark.slow
def test_ldm_and_stable_diffusion_priors_load_from_local_pipeline_folders(tmp_path):
    """The real loaders, on small pipelines made here: shapes, schedule, counting; a missing folder
    and a missing prompt embedding are refused with what to do."""
    ldm = ldm_prior(str(tiny_pipeline(tmp_path / "ldm", False)), local_files_only=True)
    assert (ldm.image_shape, ldm.latent_shape, ldm.space) == ((3, 16, 16), (3, 8, 8), "latent")
    betas = torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=torch.float64) ** 2  # LDM's scaled-linear betas
    assert torch.allclose(ldm.schedule.abar, torch.cumprod(1 - betas, 0))
    z = torch.randn(2, 3, 8, 8)
    assert ldm.decode(ldm.predict(z, 500).x0).shape == (2, 3, 16, 16)
    assert ldm.encode(torch.zeros(1, 3, 16, 16)).shape == (1, 3, 8, 8)
    folder = tiny_pipeline(tmp_path / "sd", True)
    with pytest.raises(ConfigError, match="prompt_embeds"):
        if importlib.util.find_spec("transformers") is not None:
            pytest.skip("transformers is installed: the embedding would be computed")
        stable_diffusion_prior(str(folder), local_files_only=True)
    torch.save(torch.randn(1, 77, 16), tmp_path / "empty.pt")
    sd = stable_diffusion_prior(str(folder), prompt_embeds=str(tmp_path / "empty.pt"), guidance_scale=3.0,
                                local_files_only=True)
    assert (sd.image_shape, sd.latent_shape) == ((3, 16, 16), (4, 8, 8))
    task = Task("inpaint_box", BoxInpainting(0.5), GaussianNoise(0.1))
    op = task.operator([task.sample_artifacts((3, 16, 16), make_generator(0))], (3, 16, 16))
    sd.counter.reset()
    LatentDPS(steps=2).solve(sd, op, op(torch.zeros(1, 3, 16, 16)), sigma_y=0.1, generators=[make_generator(0)])
    assert (sd.counter.nfe, sd.counter.vjp) == (4, 4)  # guidance: two network passes per evaluation, both counted
    with pytest.raises(ConfigError, match="does not exist"):
        ldm_prior(str(tmp_path / "absent"), local_files_only=True)


def test_the_ldm_grid_is_the_ldm_codes_make_ddim_timesteps():
    """t = 1 + k (T // steps) for every k below T / (T // steps): 63 steps for 60 of 1000, as
    that code runs them (its assertion on the count is commented out), ending at abar_0."""
    pairs = ldm_pairs(1000, 60)
    assert len(pairs) == 63 and pairs[0] == (993, 977) and pairs[-1] == (1, 0)
    assert [t for t, _ in ldm_pairs(1000, 50)] == list(range(981, 0, -20))
    assert ldm_pairs(1000, 1000)[0] == (999, 998) and ldm_pairs(1000, 1) == [(1, 0)]


def reference_latent_prior(ref: dict) -> LinearGMMLatentPrior:
    """The exact latent problem of a record of tests/fixtures/latent/ (record_psld.problem)."""
    mix = GaussianMixture(torch.ones(1, dtype=torch.float64), ref["mu"][None], torch.ones(1, 3, dtype=torch.float64),
                          torch.eye(3, dtype=torch.float64)[None])
    return LinearGMMLatentPrior(GMMPrior(mix, (3, 1, 1), VPSchedule.linear(), "z"),
                                LinearAutoencoder(ref["W"], ref["b"], (3, 1, 1), (6,)),
                                push_forward(mix, ref["W"], ref["b"]), "linear")


def test_psld_replays_the_official_sampler(monkeypatch):
    """The official PSLD sampler (LituRout/PSLD d734647, general-inverse branch), run on the exact
    latent problem and recorded by tests/fixtures/latent/record_psld.py: from the same initial
    latent, 50 DDIM steps on the LDM code's grid, omega 0.3, gamma 0.1, the same final latent."""
    ref = torch.load(FIXTURES / "latent" / "psld_reference.pt", weights_only=False)
    prior = reference_latent_prior(ref)
    monkeypatch.setattr(psld_module, "randn_per_sample", lambda generators, shape, like: ref["z_T"].clone())
    out = PSLD(steps=ref["steps"], omega=ref["omega"], gamma=ref["gamma"]).solve(
        prior, DenseOperator(ref["A"]), ref["y"], sigma_y=ref["sigma_y"], generators=[make_generator(0)]).x0
    z = prior.autoencoder.encode(out)
    assert torch.allclose(z, ref["final"], atol=2e-4, rtol=1e-4), (z.flatten(), ref["final"].flatten())
    # the project's own grid (ending at a clean estimate) is another sampler: it does not replay
    other = PSLD(steps=ref["steps"], omega=ref["omega"], gamma=ref["gamma"], grid="uniform").solve(
        prior, DenseOperator(ref["A"]), ref["y"], sigma_y=ref["sigma_y"], generators=[make_generator(0)]).x0
    assert not torch.allclose(prior.autoencoder.encode(other), ref["final"], atol=2e-4)


def test_resample_replays_the_official_sampler(monkeypatch):
    """The official ReSample sampler (soominkwon/resample 3e332b2, DDIMSampler.resample_sampling
    with its DPS step, pixel and latent optimisations and stochastic resampling), run on the exact
    latent problem and recorded by tests/fixtures/latent/record_resample.py: 60 steps (63 on the
    LDM code's grid), time travel with pixel optimisation at two steps and latent optimisation at
    two, the final latent optimisation. With ``code_quirks`` (the code's estimate and time-travel
    coefficients) and the recorded draws, the same final latent; without them, another sampler."""
    ref = torch.load(FIXTURES / "latent" / "resample_reference.pt", weights_only=False)
    prior = reference_latent_prior(ref)

    def replay(**options) -> torch.Tensor:
        draws = [ref["z_T"], *ref["draws"]]
        monkeypatch.setattr(resample_module, "randn_per_sample", lambda generators, shape, like: draws.pop(0).clone())
        out = ReSample(steps=ref["steps"], **options).solve(prior, DenseOperator(ref["A"]), ref["y"],
                                                            sigma_y=ref["sigma_y"],
                                                            generators=[make_generator(0)]).x0
        assert not draws  # every recorded draw used, none missing
        return prior.autoencoder.encode(out)

    z = replay(code_quirks=True)  # 3e-5 here; 4e-4 when the optimisations checked before stepping
    assert torch.allclose(z, ref["final"], atol=1e-4, rtol=1e-5), (z.flatten(), ref["final"].flatten())
    for options in (dict(code_quirks=False), dict(code_quirks=True, grid="uniform")):
        assert not torch.allclose(replay(**options), ref["final"], atol=1e-2), options


@pytest.mark.parametrize("algo", ["langevin", "hmc"])
def test_latent_daps_replays_the_official_sampler(monkeypatch, algo):
    """The official latent DAPS (zhangbingliang2019/DAPS 098df6b: sampler.py LatentDAPS, its MCMC
    sampler, EDM schedulers, Euler PF-ODE and LatentWrapper), run on the exact latent problem and
    recorded by tests/fixtures/latent/record_daps.py: 8 levels, 2 ODE steps, 6 chain steps of
    Langevin or HMC, from the same start with the same draws, the same images (2e-6 here). Changing
    one of the code's conventions (its gradient clipping, its likelihood without 1/2, its ODE
    steps) moves the result by 0.1 or more."""
    ref = torch.load(FIXTURES / "latent" / "daps_reference.pt", weights_only=False)
    prior, record = reference_latent_prior(ref), ref["records"][algo]

    def replay(**options) -> torch.Tensor:
        draws = [record["z_start"] / ref["settings"]["sigma_max"], *record["draws"]]
        monkeypatch.setattr(latent_daps_module, "randn_per_sample",
                            lambda generators, shape, like: draws.pop(0).clone())
        out = LatentDAPS(**{**ref["settings"], "algo": algo, **options}).solve(
            prior, DenseOperator(ref["A"]), ref["y"], sigma_y=ref["sigma_y"], generators=[make_generator(0)]).x0
        assert not draws  # every recorded draw used, none missing
        return out

    out = replay()
    assert torch.allclose(out, record["final"], atol=2e-5), (out.flatten(), record["final"].flatten())
    for options in (dict(grad_clip=None), dict(tau=ref["settings"]["tau"] * 2**0.5), dict(ode_steps=3)):
        assert not torch.allclose(replay(**options), record["final"], atol=1e-2), options


def test_the_latent_study_compares_pixel_and_latent_solvers_on_the_same_measurements():
    """experiments/latent: every solver, pixel or latent, of a task saw the same y for each crop
    (one measurement hash), and both kinds are present."""
    rows = pd.read_csv(REPO / "experiments" / "latent" / "offline" / "rows.csv.gz")
    exact = rows[rows["sweep"].isin(["pixel", "latent"])]
    assert set(exact["sweep"]) == {"pixel", "latent"}
    assert {"latent_dps", "latent_psld", "latent_resample", "latent_daps", "latent_reddiff"} <= set(exact["solver"])
    assert exact.groupby(["task", "image_id"])["measurement_hash"].nunique().max() == 1
    assert exact.groupby(["task", "image_id"])["solver"].nunique().min() == 16
