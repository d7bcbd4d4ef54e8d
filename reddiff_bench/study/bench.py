"""``make bench``: each solver's cost against the floor of its network calls, and how cost grows.

    python -m reddiff_bench bench [--model adm_ffhq256] [--side 64] [--batch 2] [--steps 10]
                                  [--solvers reddiff,dps,...] [--sides 32,64,128] [--batches 1,2,4] [--out bench.csv]

On an ADM-shaped network with random weights (the cost of the real one, offline), in one process:

* **floor**: each solver of ``conf/solver/`` (its YAML's settings, ``steps`` steps where it has a
  step count) on box inpainting, against the bare network calls it made: the solver's calls are
  recorded once (batch shape, with or without a gradient through the network) and replayed on
  noise, forward only or forward plus one VJP as the solver did. The ratio is the solver's own
  overhead (targets: at most 1.05x in time, 1.1x in memory). Best of ``--repeats`` for both,
  interleaved so that a busy machine slows both alike.
* **scaling**: seconds and peak memory per image against the image side (at ``--batch``) and
  against the batch size (at ``--side``), for the ``--scaling`` solvers.

Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA, the peak resident set on the CPU (where
the process's baseline, weights included, dominates it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from hydra.utils import instantiate

from ..diffusion import make_generator
from ..metrics.cost import best_of
from ..operators import BoxInpainting
from ..priors.adm import random_adm_prior
from ..run.settings import CONF_DIR, compose, group_spaces
from ..tasks import GaussianNoise, Task


def solver_names(space: str | None = None) -> list[str]:
    """Every solver option of ``conf/solver/`` (the one solver list), or those of one ``space``
    (``pixel``: the ones an ADM prior takes; ``latent``)."""
    if space is not None:
        return sorted(group_spaces("solver").get(space, []))
    return sorted(p.stem for p in (CONF_DIR / "solver").glob("*.yaml"))


def build_solver(name: str, steps: int):
    """The solver ``name`` with its YAML's settings (no preset), ``steps`` steps where it has them."""
    node = compose([f"solver={name}"]).solver
    if "steps" in node:
        node.steps = steps
    return instantiate(node, _convert_="all")


def problem(side: int, batch: int, device: torch.device):
    task = Task("inpaint_box", BoxInpainting(0.5), GaussianNoise(0.05))
    shape = (3, side, side)
    x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    artifacts = [task.sample_artifacts(shape, make_generator(0, "bench", k)) for k in range(batch)]
    operator = task.operator(artifacts, shape).to(device)
    y = task.measure(operator, x, [make_generator(0, "noise", k) for k in range(batch)])
    return task, operator, y


def solve_call(solver, prior, task, operator, y) -> Callable[[], object]:
    generators = [make_generator(0, "solver", k) for k in range(y.shape[0])]
    return lambda: solver.solve(prior, operator, y, sigma_y=task.sigma_y, generators=generators)


@dataclass(frozen=True)
class NetworkCall:
    shape: tuple[int, ...]  # the batch the network saw
    vjp: bool  # whether a gradient flowed back through it


def recorded_calls(prior, call: Callable[[], object]) -> list[NetworkCall]:
    """The network calls ``call`` makes through ``prior``, in order."""
    calls: list[NetworkCall] = []
    network = prior.network

    def recording(x_t, t):
        out = network(x_t, t)
        calls.append(NetworkCall(tuple(x_t.shape), out.requires_grad))
        return out

    prior.network = recording  # an instance attribute shadows the method for this call only
    try:
        call()
    finally:
        del prior.network
    return calls


def replay(prior, calls: list[NetworkCall], device: torch.device, t: int = 500) -> Callable[[], None]:
    """The floor: the same network calls on noise, with a VJP where the solver had one."""
    inputs = [torch.randn(c.shape, device=device) for c in calls]

    def run() -> None:
        for c, x in zip(calls, inputs):
            steps = torch.full((c.shape[0],), t, device=device, dtype=torch.long)
            if c.vjp:
                x_t = x.detach().requires_grad_(True)
                out = prior.network(x_t, steps)
                torch.autograd.grad(out, x_t, grad_outputs=torch.ones_like(out))
            else:
                with torch.no_grad():
                    prior.network(x, steps)

    return run


def floor_rows(model: str, solvers: list[str], side: int, batch: int, steps: int, repeats: int,
               device: torch.device) -> list[dict]:
    """Each solver against the replay of its own network calls, same process, same batch."""
    prior = random_adm_prior(model, image_size=side).to(device).eval()
    rows = []
    for name in solvers:
        task, operator, y = problem(side, batch, device)
        solve = solve_call(build_solver(name, steps), prior, task, operator, y)
        calls = recorded_calls(prior, solve)  # also the solver's warm-up
        floor = replay(prior, calls, device)
        floor()
        floor_s, floor_mb, solve_s, solve_mb = [float("inf")] * 4
        for _ in range(repeats):  # interleaved, so that a busy machine slows both alike
            t, m = best_of(floor, device, 1, warm_up=False)
            floor_s, floor_mb = min(floor_s, t), min(floor_mb, m)
            t, m = best_of(solve, device, 1, warm_up=False)
            solve_s, solve_mb = min(solve_s, t), min(solve_mb, m)
        vjps = sum(c.vjp for c in calls)
        nan = float("nan")  # a solver without network calls (pinv) has no floor to compare with
        rows.append(dict(kind="floor", solver=name, side=side, batch=batch, steps=steps, solve_seconds=solve_s,
                         seconds_per_image=solve_s / batch, peak_mem_mb=solve_mb, floor_seconds=floor_s,
                         floor_mem_mb=floor_mb, time_ratio=solve_s / floor_s if calls else nan,
                         mem_ratio=solve_mb / floor_mb if calls else nan, calls=f"{len(calls)} ({vjps} with VJP)"))
    return rows


def scaling_rows(model: str, solvers: list[str], side: int, batch: int, sides: list[int], batches: list[int],
                 steps: int, device: torch.device) -> list[dict]:
    """Seconds and peak memory per image against the batch size (at ``side``), then the image side
    (at ``batch``, in increasing order: on the CPU the resident set only grows)."""
    rows = []
    for kind, values in (("batch", batches), ("side", sorted(sides))):
        for value in values:
            s, b = (value, batch) if kind == "side" else (side, value)
            prior = random_adm_prior(model, image_size=s).to(device).eval()
            task, operator, y = problem(s, b, device)
            for name in solvers:
                seconds, peak = best_of(solve_call(build_solver(name, steps), prior, task, operator, y), device, 1)
                rows.append(dict(kind=f"scaling_{kind}", solver=name, side=s, batch=b, steps=steps,
                                 solve_seconds=seconds, seconds_per_image=seconds / b, peak_mem_mb=peak))
            del prior
    return rows
