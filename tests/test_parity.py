"""Parity with the official code: the timestep grid, the reference options of each solver, and
replays of trajectories recorded with the official implementations (tests/fixtures/parity)."""

from __future__ import annotations

import pytest
import torch

from reddiff_bench.diffusion import VPSchedule


def guided_diffusion_respacing(T: int, n: int) -> list[int]:
    """guided-diffusion's ``space_timesteps(T, [n])`` (the DPS code's grid), written out from its
    definition: ``round(i * (T - 1) / (n - 1))`` for i = 0..n-1."""
    stride = (T - 1) / (n - 1) if n > 1 else 1
    return sorted({round(i * stride) for i in range(n)})


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
            assert ts == guided_diffusion_respacing(T, n)[::-1]
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

import functools  # noqa: E402
import importlib  # noqa: E402
from pathlib import Path  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "parity"


@functools.lru_cache(maxsize=None)
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


@functools.lru_cache(maxsize=None)
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
