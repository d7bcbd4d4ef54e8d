"""``make bench``: each solver's cost against the floor of its network calls, and how cost grows.

    python -m reddiff_bench.bench [--model adm_ffhq256] [--side 64] [--batch 2] [--steps 10]
                                  [--sides 32,64,128] [--batches 1,2,4] [--out bench.csv]

On an ADM-shaped network with random weights (the cost of the real one, offline), in one process:

* **floor**: each solver's time and peak memory for ``steps`` steps against the same number of bare
  network calls at the same batch, forward only for RED-Diff and DDRM (no gradient through the
  network), forward plus one VJP for DPS and PiGDM. The ratio is the solver's own overhead
  (targets: at most 1.05x in time, 1.1x in memory). Best of ``--repeats`` for both.
* **scaling**: seconds and peak memory per image against the image side (at ``--batch``) and
  against the batch size (at ``--side``).

Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA, the peak resident set on the CPU (where
the process's baseline, weights included, dominates it).
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd
import torch

from .diffusion import make_generator
from .metrics.cost import CostMeter
from .operators import BoxInpainting
from .tasks import GaussianNoise, Task

SOLVERS = ("reddiff", "dps", "pgdm", "ddrm")
NEEDS_VJP = {"reddiff": False, "ddrm": False, "dps": True, "pgdm": True}


def build_solver(name: str, steps: int):
    from .solvers import DDRM, DPS, PiGDM, REDDiff

    return {"reddiff": REDDiff, "dps": DPS, "pgdm": PiGDM, "ddrm": DDRM}[name](steps=steps)


def problem(side: int, batch: int, device: torch.device):
    task = Task("inpaint_box", BoxInpainting(0.5), GaussianNoise(0.05))
    shape = (3, side, side)
    x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    artifacts = [task.sample_artifacts(shape, make_generator(0, "bench", k)) for k in range(batch)]
    operator = task.operator(artifacts, shape).to(device)
    y = task.measure(operator, x, [make_generator(0, "noise", k) for k in range(batch)])
    return task, operator, y


def measure(run, device: torch.device, repeats: int, warm_up: bool = True) -> tuple[float, float]:
    """Best (seconds, peak MiB) of ``repeats`` calls of ``run`` (after one warm-up call)."""
    if warm_up:
        run()
    best_time, best_mem = float("inf"), float("inf")
    for _ in range(repeats):
        with CostMeter(device) as cost:
            run()
        best_time = min(best_time, cost.result.seconds)
        best_mem = min(best_mem, cost.result.peak_mem_mb)
    return best_time, best_mem


def floor_calls(prior, y_shape: tuple[int, ...], steps: int, vjp: bool, device: torch.device):
    """``steps`` bare network calls at the solver's batch: forward, or forward + one VJP."""
    x = torch.randn(y_shape[0], *prior.image_shape, device=device)

    def run():
        for _ in range(steps):
            if vjp:
                x_t = x.detach().requires_grad_(True)
                out = prior.predict(x_t, 500).x0
                torch.autograd.grad(out, x_t, grad_outputs=torch.ones_like(out))
            else:
                with torch.no_grad():
                    prior.predict(x, 500)

    return run


def solve_call(solver, prior, task, operator, y):
    generators = [make_generator(0, "solver", k) for k in range(y.shape[0])]
    return lambda: solver.solve(prior, operator, y, sigma_y=task.sigma_y, generators=generators)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="adm_ffhq256", help="a known ADM checkpoint's architecture (random weights)")
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sides", default="32,64,128")
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="write the rows here (CSV)")
    args = parser.parse_args(argv)
    from .priors.adm import random_adm_prior
    from .runner import resolve_device

    device = resolve_device(args.device)
    rows = []
    priors: dict[int, object] = {}

    def prior_at(side: int):
        if side not in priors:
            priors[side] = random_adm_prior(args.model, image_size=side).to(device).eval()
        return priors[side]

    for name in SOLVERS:  # the floor: solver against its bare network calls, same process, same batch
        prior = prior_at(args.side)
        task, operator, y = problem(args.side, args.batch, device)
        solver = build_solver(name, args.steps)
        floor = floor_calls(prior, tuple(y.shape), args.steps, NEEDS_VJP[name], device)
        solve = solve_call(solver, prior, task, operator, y)
        floor_s, floor_mb, solve_s, solve_mb = [float("inf")] * 4
        floor(), solve()  # warm up both
        for _ in range(args.repeats):  # interleaved, so that a busy machine slows both alike
            t, m = measure(floor, device, 1, warm_up=False)
            floor_s, floor_mb = min(floor_s, t), min(floor_mb, m)
            t, m = measure(solve, device, 1, warm_up=False)
            solve_s, solve_mb = min(solve_s, t), min(solve_mb, m)
        rows.append(dict(kind="floor", solver=name, side=args.side, batch=args.batch, steps=args.steps,
                         solve_seconds=solve_s, seconds_per_image=solve_s / args.batch, peak_mem_mb=solve_mb,
                         floor_seconds=floor_s, floor_mem_mb=floor_mb, time_ratio=solve_s / floor_s,
                         mem_ratio=solve_mb / floor_mb, calls="forward + VJP" if NEEDS_VJP[name] else "forward"))
    # batches first, then sides in increasing order: on the CPU the resident set only grows
    for kind, values in (("batch", [int(v) for v in args.batches.split(",")]),
                         ("side", sorted(int(v) for v in args.sides.split(",")))):
        for value in values:
            side, batch = (value, args.batch) if kind == "side" else (args.side, value)
            prior = prior_at(side)
            task, operator, y = problem(side, batch, device)
            for name in SOLVERS:
                seconds, peak = measure(solve_call(build_solver(name, args.steps), prior, task, operator, y), device, 1)
                rows.append(dict(kind=f"scaling_{kind}", solver=name, side=side, batch=batch, steps=args.steps,
                                 solve_seconds=seconds, seconds_per_image=seconds / batch, peak_mem_mb=peak))
        priors = {args.side: priors[args.side]} if args.side in priors else {}  # free the larger networks
    frame = pd.DataFrame(rows)
    frame["device"], frame["model"] = str(device), f"{args.model} (random weights)"
    floor = frame[frame["kind"] == "floor"][["solver", "calls", "solve_seconds", "floor_seconds", "time_ratio",
                                             "peak_mem_mb", "floor_mem_mb", "mem_ratio"]]
    print(f"Solvers against the floor of their network calls: {args.model} architecture (random weights), "
          f"{args.side}x{args.side}, batch {args.batch}, {args.steps} steps, {device}:\n")
    print(floor.to_markdown(index=False, floatfmt=".4g"))
    time_ok, mem_ok = bool((floor["time_ratio"] <= 1.05).all()), bool((floor["mem_ratio"] <= 1.1).all())
    print(f"\ntime within 1.05x of the floor: {'yes' if time_ok else 'NO'}; "
          f"memory within 1.1x: {'yes' if mem_ok else 'NO'}")
    scaling = frame[frame["kind"] != "floor"].pivot_table(index=["kind", "side", "batch"], columns="solver",
                                                          values="seconds_per_image")
    print("\nSeconds per image against the image side and the batch size:\n")
    print(scaling.reset_index().to_markdown(index=False, floatfmt=".4g"))
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False, float_format="%.6g")
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"\n({time.perf_counter() - start:.0f} s)")
    sys.exit(code)
