"""Every task under every solver that supports it; the others refuse before any work."""

from __future__ import annotations

import functools

import pytest
import torch
from hydra.utils import instantiate

from reddiff_bench.diffusion import make_generator
from reddiff_bench.operators import SVDOperator
from reddiff_bench.study.bench import solver_names

from .conftest import CONF, NOT_AT_16, REPO, USER_FILE_TASKS
from .helpers import compose_config
from .test_operators import small_overrides

TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml") if p.stem not in ("random_matrix", *NOT_AT_16))
SOLVERS = solver_names("pixel")  # the latent solvers: tests/test_latent.py


@functools.cache
def solver_for(name: str):
    cfg = compose_config([f"solver={name}"])
    small = {"steps": 4, "annealing_steps": 3, "ode_steps": 2, "langevin_steps": 2, "particles": 3,
             "timesteps_per_step": 2}  # a smoke run, not a benchmark
    for key, value in small.items():
        if key in cfg.solver:
            cfg.solver[key] = value
    return instantiate(cfg.solver, _convert_="all")


@functools.cache
def measured(task_name: str, ids: tuple[str, ...], x: torch.Tensor):
    cfg = compose_config([f"task={task_name}"] + small_overrides(task_name, 16))
    task = instantiate(cfg.task, _convert_="all")
    shape = tuple(x.shape[1:])
    artifacts = [task.sample_artifacts(shape, make_generator(0, "artifacts", i)) for i in ids]
    op = task.operator(artifacts, shape)
    y = task.measure(op, x, [make_generator(0, "noise", i) for i in ids])
    return task, op, y


VARIANTS = ("dps_", "reddiff_")  # another paper's version of a task: the fast suite runs it under a few solvers
FAST_ON_VARIANTS = ("reddiff", "dps", "ddrm", "pinv")  # the data term, the VJP guidance, the SVD path, the baseline


def pairs():
    """Every (task, solver); a paper's variant of a task under the other solvers runs in ``make test-all``."""
    for task_name in TASKS:
        for solver_name in SOLVERS:
            slow = task_name.startswith(VARIANTS) and solver_name not in FAST_ON_VARIANTS
            yield pytest.param(task_name, solver_name, marks=[pytest.mark.slow] if slow else [],
                               id=f"{task_name}-{solver_name}")


@pytest.mark.parametrize("task_name,solver_name", list(pairs()))
def test_task_runs_under_every_solver_that_supports_it(task_name, solver_name, photo_prior, photo_batch):
    """One test per (task, solver): a failure names its pair and hides no other."""
    ids, x = photo_batch
    ids, x = tuple(ids[:2]), x[:2]
    task, op, y = measured(task_name, ids, x)
    assert torch.isfinite(y).all()
    solver = solver_for(solver_name)
    if solver_name == "diffpir":  # a gradient data step needs a noise level: refused on noiseless tasks without SVD
        if not isinstance(op, SVDOperator) and task.sigma_y == 0:
            with pytest.raises(ValueError, match="solver.sigma_n"):
                solver.check(op, task.sigma_y)
            return
        solver.check(op, task.sigma_y)
    elif solver_name == "pinv":  # the pseudo-inverse (delta 0) needs no SVD; regularised (delta > 0) does
        solver.check(op)
    elif getattr(solver, "check", None) is not None and not isinstance(op, SVDOperator):
        with pytest.raises(ValueError, match="SVD"):
            solver.check(op)
        return
    out = solver.solve(photo_prior, op, y, sigma_y=task.sigma_y,
                       generators=[make_generator(0, "solver", i) for i in ids]).x0
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_cli_smoke_sweep_over_every_task_and_solver(tmp_path):
    """The sweep a user runs: every task x solver through the CLI, one image; refused pairs
    leave an error.txt and the sweep goes on."""
    import subprocess
    import sys

    import pandas as pd

    run_here = [t for t in TASKS if t not in USER_FILE_TASKS]
    variants = [t for t in run_here if t.startswith(VARIANTS)]  # under the fast suite's solvers (all: in-process)
    jobs = 0
    for tasks, solvers in (([t for t in run_here if t not in variants], SOLVERS), (variants, FAST_ON_VARIANTS)):
        proc = subprocess.run([sys.executable, "-m", "reddiff_bench", "-m", f"task={','.join(tasks)}",
                               f"solver={','.join(solvers)}", "dataset.num_images=1", "logger=none", "progress=false",
                               "report.allow_errors=true", f"paths.output_dir={tmp_path}"],
                              cwd=REPO, capture_output=True, text=True, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        jobs += len(tasks) * len(solvers)
    rows = pd.concat([pd.read_csv(p) for p in tmp_path.rglob("metrics.csv")])
    refused = list(tmp_path.rglob("error.txt"))
    assert len(rows) + len(refused) == jobs
    # refused: solvers that need an SVD; DPS's mirrored blurs, whose 61-px kernel cannot mirror a 16-px image;
    # DiffPIR on noiseless tasks without an SVD
    assert all(any(reason in p.read_text() for reason in ("SVD", "cannot mirror", "solver.sigma_n")) for p in refused)
