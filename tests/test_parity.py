"""Parity with the official code: the timestep grid, the reference options of each solver, and
replays of trajectories recorded with the official implementations (tests/fixtures/parity)."""

from __future__ import annotations

import functools
import gzip
import importlib
import itertools
import json
from pathlib import Path

import pytest
import torch

from reddiff_bench.diffusion import VPSchedule, make_generator

GRIDS = Path(__file__).parent / "fixtures" / "grid" / "space_timesteps.json.gz"


def guided_diffusion_grid(T: int, n: int) -> list[int]:
    """``sorted(space_timesteps(T, [n]))`` as guided-diffusion returned it (recorded by
    tests/fixtures/grid/record.py from the official code)."""
    return list(itertools.accumulate(recorded_grids()[str(T)][str(n)]))


@functools.cache
def recorded_grids() -> dict:
    return json.loads(gzip.decompress(GRIDS.read_bytes()))["grids"]


@pytest.mark.parametrize("T", [1000, 250])
def test_the_respaced_grid_is_guided_diffusions_for_every_step_count(T):
    """Regression: the grid was ``round(i (T - 1) / (n - 1))``, one step off guided-diffusion's
    accumulated stride for 278 of the 1000 step counts at T = 1000 (64 of 250 at T = 250)."""
    schedule = VPSchedule.linear(T)
    wrong = [n for n in range(1, T + 1) if sorted(schedule.timesteps(n, "respaced")) != guided_diffusion_grid(T, n)]
    assert wrong == []


@pytest.mark.parametrize("T", [1000, 250])
def test_the_timestep_grid_always_starts_at_the_top_of_the_schedule(T):
    """Regression (issue 16): the grid was ``i * (T // N)``, so N = 400 started at t = 798 and
    N = 501 at t = 500 while the samplers still started from pure noise. Every N in 1..T now
    gives N distinct descending steps ending at 0, starting at T - T/N when N divides T (the
    RED-diff / DDRM / DDIM reference grid ``range(0, T, T // N)``) and at T - 1 otherwise (the DPS
    code's respacing, step for step)."""
    schedule = VPSchedule.linear(T)
    for n in range(1, T + 1):
        ts = schedule.timesteps(n)
        assert len(ts) == n and ts[-1] == 0
        assert all(a > b for a, b in zip(ts, ts[1:]))
        if T % n == 0:
            assert ts == list(range(0, T, T // n))[::-1]
            assert ts[0] == T - T // n
        else:
            assert ts[0] == T - 1
            assert ts == guided_diffusion_grid(T, n)[::-1]
    for bad in (0, -5, T + 1):
        with pytest.raises(ValueError, match="num_steps"):
            schedule.timesteps(bad)


def test_the_steps_the_issue_measured_now_start_from_noise():
    schedule = VPSchedule.linear(1000)
    assert schedule.timesteps(400)[0] == 999 and schedule.timesteps(501)[0] == 999
    assert schedule.timesteps(600)[0] == 999
    assert schedule.timesteps(1000) == list(range(999, -1, -1))
    assert float(schedule.alpha(torch.tensor(schedule.timesteps(501)[0]))) < 0.01  # was 0.28 at t = 500


# --- replays of the official code's trajectories (tests/fixtures/parity/README.md) -------------------

FIXTURES = Path(__file__).parent / "fixtures" / "parity"


@functools.cache
def parity_records(name: str) -> tuple[dict, ...]:
    return tuple(torch.load(FIXTURES / name, weights_only=False)["records"])


def record_ids(name: str) -> list[str]:
    return [f"{r['solver']}-{r['task']}-sigma{r['sigma_y']}" for r in parity_records(name)]


def build_solver(record: dict):
    from reddiff_bench.solvers import DDRM, DPS, PiGDM, REDDiff

    options = dict(record["options"])
    if record["solver"] == "reddiff":
        lr = options.pop("lr")
        return REDDiff(**options, optimizer=functools.partial(torch.optim.Adam, lr=lr, betas=(0.9, 0.99)))
    return {"pgdm": PiGDM, "ddrm": DDRM, "dps": DPS}[record["solver"]](**options)


def build_operator(record: dict):
    from reddiff_bench.operators import BlockAverageSR, MaskOperator

    if record["task"] == "sr4":
        return BlockAverageSR(4).operator({}, (3, 16, 16))
    return MaskOperator(record["artifacts"]["mask"][None])


@functools.cache
def shipped_prior(dtype: torch.dtype):
    from reddiff_bench.priors.diffusers_prior import bundled_prior

    return bundled_prior("photos_unet16").to(dtype)


def replay(record: dict, monkeypatch) -> tuple[dict[int, torch.Tensor], torch.Tensor, int]:
    """Run the project's solver on the record's y with the reference's noise in the reference's
    order (in the record's dtype); returns the iterate after each step (1-based), the output, and
    how many of the recorded draws were used."""
    dtype = record["y"].dtype
    prior = shipped_prior(dtype)
    solver, operator = build_solver(record), build_operator(record).to(dtype)
    queue = list(record["noise"])
    # DDRM draws in the spectral domain: the fixture holds V z (image space); ours is V^T of it
    to_solver = operator.vt if record["solver"] == "ddrm" else (lambda n: n)

    def replayed(generators, shape, like):
        assert queue, "the solver draws more noise than the reference did"
        return to_solver(queue.pop(0).to(like))

    monkeypatch.setattr(importlib.import_module(type(solver).__module__), "randn_per_sample", replayed)
    iterates: dict[int, torch.Tensor] = {}
    result = solver.solve(prior, operator, record["y"], sigma_y=record["sigma_y"], generators=[None],
                          callback=lambda step, info: iterates.__setitem__(step + 1, info["x"].detach().clone()))
    return iterates, result.x0, len(record["noise"]) - len(queue)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def ddrm_init_gap(record: dict) -> float:
    """The reference DDRM starts from ``xbar_T / sigma_T`` where the VP state is
    ``sqrt(abar_T) xbar_T``: larger by ``1 / sqrt(1 - abar_T)`` (5.3e-5 at t = 950, 20 steps). It
    bounds the gap of the first iterate; the gap then fades (1e-7 after 10 steps)."""
    abar_top = float(VPSchedule.linear(1000).abar[1000 - 1000 // record["options"]["steps"]])
    return (1 - abar_top) ** -0.5 - 1


def check_replay(record: dict, monkeypatch, step_tol: float, final_tol: float) -> None:
    iterates, x0, used = replay(record, monkeypatch)
    assert used == len(record["noise"]), "the solver used fewer noise draws than the reference"
    for step, expected in record["iterates"].items():
        tol = step_tol + (ddrm_init_gap(record) if record["solver"] == "ddrm" and step == 1 else 0.0)
        assert relative_error(iterates[step], expected) < tol, (step, relative_error(iterates[step], expected))
    assert relative_error(x0, record["final"]) < final_tol, relative_error(x0, record["final"])


@pytest.mark.parametrize("index", range(len(parity_records("trajectories.pt"))),
                         ids=record_ids("trajectories.pt"))
def test_solvers_replay_the_official_code_in_float32(index, monkeypatch):
    """Each solver, at the options that select the reference behaviour, reproduces the official
    implementation's float32 trajectory on the shipped prior from the same y and noise: within
    2e-5 of the largest entry after 1 and 10 steps (measured up to 1.3e-5: RED-Diff after 10
    steps, float32 rounding, see the float64 test) and 1e-5 at the end (measured up to 6.9e-6)."""
    check_replay(parity_records("trajectories.pt")[index], monkeypatch, step_tol=2e-5, final_tol=1e-5)


FLOAT64_TOLERANCE = {
    "reddiff": (1e-12, 1e-12),  # measured 1e-14: the same arithmetic
    "pgdm": (1e-12, 1e-12),     # measured 4e-16
    "ddrm": (1e-6, 1e-7),       # measured 1e-7 and 3e-8, after the first step's init gap
    "dps": (3e-7, 3e-7),        # measured 9e-8: the official code rounds its coefficients to float32
}


@pytest.mark.parametrize("index", range(len(parity_records("trajectories_float64.pt"))),
                         ids=record_ids("trajectories_float64.pt"))
def test_solvers_replay_the_official_code_in_float64(index, monkeypatch):
    """In float64 (reference and project both) RED-Diff and PiGDM agree to 1e-14: the float32 gaps
    above are rounding. DPS keeps the official code's own float32 rounding of its coefficients
    (``extract_and_expand(...).float()``), DDRM the reference's scaling of x_T."""
    record = parity_records("trajectories_float64.pt")[index]
    check_replay(record, monkeypatch, *FLOAT64_TOLERANCE[record["solver"]])


# --- the reference options, property by property ------------------------------------------------------


def overshooting_prior():
    """A stand-in for an untrained network: predicts x0 = 50 x_t (far outside [-1, 1])."""
    from reddiff_bench.priors.base import DiffusionPrior

    class Prior(DiffusionPrior):
        prediction_type = "x0"

        def network(self, x_t, t):
            return 50 * x_t

    return Prior(VPSchedule.linear(1000), (3, 8, 8), "overshooting")


def box_problem(sigma_y: float = 0.05, size: int = 8):
    from reddiff_bench.diffusion import make_generator
    from reddiff_bench.operators import BoxInpainting
    from reddiff_bench.tasks import GaussianNoise, Task

    task = Task("inpaint_box", BoxInpainting(0.5), GaussianNoise(sigma_y))
    shape = (3, size, size)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    op = task.operator([task.sample_artifacts(shape, make_generator(0, "a"))] * 2, shape)
    y = task.measure(op, x, [make_generator(0, "noise", k) for k in range(2)])
    return op, y


def generators():
    from reddiff_bench.diffusion import make_generator

    return [make_generator(0, "solver", k) for k in range(2)]


def test_dps_clips_x0_hat_to_the_data_range_as_the_official_sampler():
    """With a network whose x0_hat overshoots, DPS without clipping returns values of hundreds;
    with clip_x0 (the default, the official code's clip_denoised) the output stays in [-1, 1]
    up to the last guidance step."""
    from reddiff_bench.solvers import DPS

    prior = overshooting_prior()
    op, y = box_problem(size=8)
    clipped = DPS(steps=20).solve(prior, op, y, sigma_y=0.05, generators=generators()).x0
    raw = DPS(steps=20, clip_x0=False).solve(prior, op, y, sigma_y=0.05, generators=generators()).x0
    assert clipped.abs().max() < 1.5 and raw.abs().max() > 50
    assert prior.data_range == (-1.0, 1.0)


def test_dps_never_clips_vectors():
    """The Gaussian-mixture track's vectors have no data range: clip_x0 must not touch them. On the
    grid mixture (means up to 16 away from 0) DPS's samples leave [-1, 1] by far, and clip_x0 on or
    off gives the same samples."""
    from reddiff_bench.operators import DenseOperator
    from reddiff_bench.priors.gmm import grid_gmm_prior
    from reddiff_bench.solvers import DPS

    prior = grid_gmm_prior(8)
    assert prior.data_range is None
    g = torch.Generator().manual_seed(0)
    op = DenseOperator(torch.randn(1, 2, 8, generator=g))
    y = op(16 * torch.ones(1, 8))
    draws = {clip: DPS(steps=20, clip_x0=clip).solve(prior, op, y.expand(4, -1), sigma_y=0.1,
                                                      generators=[make_generator(0, k) for k in range(4)]).x0
             for clip in (True, False)}
    assert draws[True].abs().max() > 4
    assert torch.equal(draws[True], draws[False])


def test_pgdm_reference_weighting_ignores_sigma_y_and_the_paper_weighting_does_not(photo_prior, photo_batch):
    from reddiff_bench.solvers import PiGDM

    op, y = box_problem(size=16)
    run = lambda solver, s: solver.solve(photo_prior, op, y, sigma_y=s, generators=generators()).x0  # noqa: E731
    reference = PiGDM(steps=20, weighting="reference")
    assert torch.equal(run(reference, 0.05), run(reference, 0.5))
    paper = PiGDM(steps=20)
    assert (run(paper, 0.05) - run(paper, 0.5)).abs().max() > 1e-2


def test_pgdm_paste_measured_ends_exactly_at_y_on_measured_pixels(photo_prior):
    from reddiff_bench.solvers import PiGDM

    op, y = box_problem(size=16)
    out = PiGDM(steps=20, weighting="reference", paste_measured=True).solve(
        photo_prior, op, y, sigma_y=0.05, generators=generators()).x0
    measured = op.y_support(y).expand_as(y) > 0
    assert torch.allclose(out[measured], y[measured], atol=1e-6)
    plain = PiGDM(steps=20, weighting="reference").solve(photo_prior, op, y, sigma_y=0.05, generators=generators()).x0
    assert (plain[measured] - y[measured]).abs().max() > 1e-2


def test_reddiff_obs_mean_all_equals_measured_with_the_kept_fraction_as_weight(photo_prior):
    """The reference's mean over all entries is the project's mean over measured entries times the
    kept fraction: with obs_weight = kept fraction the two runs agree (to float32 rounding)."""
    from reddiff_bench.solvers import REDDiff

    op, y = box_problem(size=16)
    kept = float(op.y_support(y).mean())
    ours = REDDiff(steps=30).solve(photo_prior, op, y, sigma_y=0.05, generators=generators()).x0
    ref = REDDiff(steps=30, obs_mean="all", obs_weight=1 / kept).solve(
        photo_prior, op, y, sigma_y=0.05, generators=generators()).x0
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    other = REDDiff(steps=30, obs_mean="all").solve(photo_prior, op, y, sigma_y=0.05, generators=generators()).x0
    assert (other - ours).abs().max() > 1e-3


def test_reddiff_before_last_step_is_the_iterate_before_the_last_update(photo_prior):
    from reddiff_bench.solvers import REDDiff

    op, y = box_problem(size=16)
    seen = []
    final = REDDiff(steps=10).solve(photo_prior, op, y, sigma_y=0.05, generators=generators(),
                                    callback=lambda step, info: seen.append(info["x"].clone())).x0
    before = REDDiff(steps=10, output="before_last_step").solve(photo_prior, op, y, sigma_y=0.05,
                                                               generators=generators()).x0
    assert torch.equal(final, seen[-1]) and torch.equal(before, seen[-2])


@pytest.mark.parametrize("rule", ["y", "x0_hat"])
def test_ddrm_last_step_rule_at_zero_noise(photo_prior, rule):
    from reddiff_bench.solvers import DDRM

    op, y = box_problem(sigma_y=0.0, size=16)
    out = DDRM(steps=10, last_step_measured=rule).solve(photo_prior, op, y, sigma_y=0.0, generators=generators()).x0
    measured = op.y_support(y).expand_as(y) > 0
    gap = (out[measured] - y[measured]).abs().max()
    assert (gap < 1e-6) if rule == "y" else (gap > 1e-3)


def test_unknown_reference_options_are_refused():
    from reddiff_bench.solvers import DDRM, DPS, PiGDM, REDDiff

    for make, match in ((lambda: PiGDM(weighting="both"), "weighting"),
                        (lambda: PiGDM(paste_measured=True), "weighting=reference"),
                        (lambda: REDDiff(obs_mean="some"), "obs_mean"), (lambda: REDDiff(output="best"), "output"),
                        (lambda: DDRM(last_step_measured="mean"), "last_step_measured")):
        with pytest.raises(ValueError, match=match):
            make()
    from reddiff_bench.operators import BlockAverageSR

    with pytest.raises(ValueError, match="mask operator"):
        PiGDM(weighting="reference", paste_measured=True).check(BlockAverageSR(4).operator({}, (3, 8, 8)))
    with pytest.raises(ValueError, match="spacing"):
        DPS(steps=10, spacing="log")
