"""GPU-hours of a run or sweep before it runs, from its solvers' network calls.

    python -m reddiff_bench.estimate +experiment=imagenet_inpaint --seconds-per-nfe 0.03 --seconds-per-vjp 0.07
    python -m reddiff_bench.estimate +experiment=imagenet_inpaint --measure

Every job of the sweep (the preset's ``hydra.sweeper.params`` and any ``key=a,b`` on the command
line) is composed; each solver is run once on a stand-in network that costs nothing but is counted
like the real one (``DiffusionPrior`` counts the calls), which gives its exact NFE and VJP per
image. Time per image = NFE x seconds per forward call + VJP x seconds per backward pass through
the network, per image (at the run's batch size). ``--measure`` times the job's own model on this
machine's device (a known ADM checkpoint that is not here is timed with random weights of its
architecture: the same cost). The estimate leaves out loading, metrics and per-job start-up.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .config import compose


def counting_prior(schedule, image_shape):
    """Stands in for a model: the same schedule and shape, a free network (zeros), counted calls."""
    from .priors.base import DiffusionPrior

    class Free(DiffusionPrior):
        def network(self, x_t, t):
            return 0.0 * x_t  # keeps the graph, so backward passes are counted too

    return Free(schedule, image_shape, "counting")


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The jobs' override lists: the cartesian product of the preset's sweeper params and the
    command line's ``key=a,b`` values (Hydra's own parser)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed_own = parser.parse_overrides(overrides)
    fixed = [text for text, override in zip(overrides, parsed_own) if not override.is_sweep_override()]
    base = compose(fixed)  # the preset's own sweeper params need the preset, not the swept values
    params = dict(base.hydra.sweeper.get("params") or {})
    parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + overrides)
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch]


def count_calls(cfg) -> tuple[int, int]:
    """NFE and VJP for one image (one sample) of the job ``cfg``."""
    from hydra.utils import instantiate

    from .diffusion import VPSchedule, make_generator

    solver = instantiate(cfg.solver, _convert_="all")
    task = instantiate(cfg.task, _convert_="all")
    shape = _stand_in_shape(cfg)
    prior = counting_prior(VPSchedule.linear(1000), shape)
    artifacts = task.sample_artifacts(shape, make_generator(0, "estimate"))
    operator = task.operator([artifacts], shape)
    x = torch.zeros(1, *shape)
    y = task.measure(operator, x, [make_generator(0, "noise")])
    prior.counter.reset()
    solver.solve(prior, operator, y, sigma_y=task.sigma_y, generators=[make_generator(0, "solver")])
    return prior.counter.nfe, prior.counter.vjp


def _stand_in_shape(cfg) -> tuple[int, ...]:
    """A small image (64 px: every task's kernels fit) or the vector dimension of the job."""
    dim = cfg.dataset.get("dim")
    return (int(dim),) if dim is not None else (3, 64, 64)


def measure(cfg, device: torch.device, repeats: int = 3) -> tuple[float, float, str]:
    """Seconds per image of one forward call, and of one backward pass, of the job's model at its
    batch size on ``device`` (random weights of the architecture if the checkpoint is absent)."""
    from hydra.utils import instantiate

    from .errors import ConfigError

    try:
        prior = instantiate(cfg.model, _convert_="all")
        what = prior.name
    except Exception as err:  # noqa: BLE001 - an absent checkpoint: time its architecture instead
        name = cfg.model.get("checkpoint_name")
        if name is None:
            raise ConfigError(f"cannot build the model to time it ({err}); give --seconds-per-nfe and "
                              f"--seconds-per-vjp instead") from err
        from .priors.adm import random_adm_prior

        prior = random_adm_prior(name)
        what = f"{prior.name} (the checkpoint is absent: random weights, the same cost)"
    prior = prior.to(device).eval()
    batch = int(cfg.batch_size)
    x = torch.randn(batch, *prior.image_shape, device=device)

    def timed(backward: bool) -> float:
        best = float("inf")
        for _ in range(repeats + 1):  # the first call warms up
            x_t = x.clone().requires_grad_(backward)
            _sync(device)
            start = time.perf_counter()
            with torch.set_grad_enabled(backward):
                out = prior.predict(x_t, 500).x0
                if backward:
                    torch.autograd.grad(out.sum(), x_t)
            _sync(device)
            best = min(best, time.perf_counter() - start)
        return best / batch

    forward = timed(False)
    both = timed(True)
    return forward, max(both - forward, 0.0), what


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Other arguments are Hydra overrides, as for python -m reddiff_bench.")
    parser.add_argument("--seconds-per-nfe", type=float, help="seconds of one forward call per image")
    parser.add_argument("--seconds-per-vjp", type=float, help="seconds of one backward pass per image")
    parser.add_argument("--measure", action="store_true", help="time the model here (its device: cuda when present)")
    args, overrides = parser.parse_known_args(argv)
    from .errors import ConfigError

    try:
        jobs = expand_sweep(overrides)
        first = compose(jobs[0])
        device = None
        if args.measure:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            s_nfe, s_vjp, what = measure(first, device)
            print(f"measured on {device}: {what}: {s_nfe:.4g} s per forward call and {s_vjp:.4g} s per backward "
                  f"pass, per image at batch size {first.batch_size}")
        elif args.seconds_per_nfe is None or args.seconds_per_vjp is None:
            parser.error("give --seconds-per-nfe and --seconds-per-vjp, or --measure")
        else:
            s_nfe, s_vjp = args.seconds_per_nfe, args.seconds_per_vjp
        rows = []
        for job in jobs:
            cfg = compose(job)
            nfe, vjp = count_calls(cfg)
            images = int(cfg.dataset.get("num_images") or cfg.dataset.get("num_problems") or 0)
            per_image = (nfe * s_nfe + vjp * s_vjp) * int(cfg.n_samples)
            rows.append(dict(job=" ".join(o for o in job if not o.startswith("+experiment")) or "(defaults)",
                             images=images, nfe=nfe, vjp=vjp, seconds_per_image=per_image,
                             hours=images * per_image / 3600))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import pandas as pd

    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".4g"))
    source = f"timed on {device}" if args.measure else "at the given seconds per call"
    print(f"\ntotal: {table['hours'].sum():.4g} device-hours over {len(rows)} job(s), {source} "
          f"(network calls only; divide by the number of GPUs that share the sweep)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
