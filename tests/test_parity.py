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
