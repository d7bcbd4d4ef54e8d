"""The bench's floor is the solver's own network calls, replayed bare: for every solver of
conf/solver/ the recorded calls are the ones the prior counted, and the replay makes them again."""

from __future__ import annotations

import pytest

from reddiff_bench.study.bench import problem, recorded_calls, replay, solve_call, solver_names

from .test_smoke import solver_for


@pytest.mark.parametrize("name", solver_names("pixel"))
def test_the_floor_replays_the_solvers_own_network_calls(name, photo_prior):
    task, operator, y = problem(16, 2, "cpu")
    solver = solver_for(name)  # its YAML's settings, shrunk for speed
    photo_prior.counter.reset()
    calls = recorded_calls(photo_prior, solve_call(solver, photo_prior, task, operator, y))
    assert len(calls) == photo_prior.counter.calls
    if photo_prior.counter.nfe == photo_prior.counter.calls:  # one evaluation per image in each call
        assert sum(c.vjp for c in calls) == photo_prior.counter.vjp
    assert (name == "pinv") == (not calls)  # every solver but pinv calls the network
    assert "network" not in vars(photo_prior)  # the recording is undone
    assert recorded_calls(photo_prior, replay(photo_prior, calls, "cpu")) == calls
