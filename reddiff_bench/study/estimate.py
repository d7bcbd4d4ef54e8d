"""GPU-hours of a run or sweep before it runs, from its solvers' network calls.

    python -m reddiff_bench estimate +experiment=imagenet_inpaint --seconds-per-nfe 0.03 --seconds-per-vjp 0.07
    python -m reddiff_bench estimate +experiment=imagenet_inpaint --measure

Every job of the sweep (the preset's ``hydra.sweeper.params`` and any ``key=a,b`` on the command
line) is composed; each solver is run once on a stand-in network that costs nothing but is counted
like the real one (``DiffusionPrior`` counts the calls), which gives its exact NFE and VJP per
image. Time per image = NFE x seconds per forward call + VJP x seconds per backward pass through
the network, per image (at the run's batch size). ``--measure`` times the job's own model on this
machine's device (a known ADM checkpoint that is not here is timed with random weights of its
architecture: the same cost). The estimate leaves out loading, metrics and per-job start-up.
"""

from __future__ import annotations

import pandas as pd
import torch
from hydra.utils import instantiate

from ..diffusion import VPSchedule, make_generator
from ..errors import ConfigError
from ..metrics.cost import best_of, network_calls
from ..priors.adm import random_adm_prior
from ..priors.base import DiffusionPrior
from ..run.settings import compose


def counting_prior(schedule, image_shape):
    """Stands in for a model: the same schedule and shape, a free network (zeros), counted calls."""

    class Free(DiffusionPrior):
        def network(self, x_t, t):
            return 0.0 * x_t  # keeps the graph, so backward passes are counted too

    return Free(schedule, image_shape, "counting")


def count_calls(cfg) -> tuple[int, int]:
    """NFE and VJP for one image (one sample) of the job ``cfg``."""
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


def seconds_per_call(cfg, device: torch.device, repeats: int = 3) -> tuple[float, float, str]:
    """Seconds per image of one forward call, and of one backward pass, of the job's model at its
    batch size on ``device`` (random weights of the architecture if the checkpoint is absent)."""
    try:
        prior = instantiate(cfg.model, _convert_="all")
        what = prior.name
    except Exception as err:  # noqa: BLE001 - an absent checkpoint: time its architecture instead
        name = cfg.model.get("checkpoint_name")
        if name is None:
            raise ConfigError(f"cannot build the model to time it ({err}); give --seconds-per-nfe and "
                              f"--seconds-per-vjp instead") from err
        prior = random_adm_prior(name)
        what = f"{prior.name} (the checkpoint is absent: random weights, the same cost)"
    prior = prior.to(device).eval()
    batch = int(cfg.batch_size)
    forward, _ = best_of(network_calls(prior, batch, 1, False, device), device, repeats)
    both, _ = best_of(network_calls(prior, batch, 1, True, device), device, repeats)
    return forward / batch, max(both - forward, 0.0) / batch, what


def estimate(jobs: list[list[str]], s_nfe: float, s_vjp: float) -> pd.DataFrame:
    """One row per job: its images, NFE and VJP per image, seconds per image and device-hours."""
    rows = []
    for job in jobs:
        cfg = compose(job)
        nfe, vjp = count_calls(cfg)
        images = int(cfg.dataset.get("num_images") or cfg.dataset.get("num_problems") or 0)
        per_image = (nfe * s_nfe + vjp * s_vjp) * int(cfg.n_samples)
        rows.append(dict(job=" ".join(o for o in job if not o.startswith("+experiment")) or "(defaults)",
                         images=images, nfe=nfe, vjp=vjp, seconds_per_image=per_image,
                         hours=images * per_image / 3600))
    return pd.DataFrame(rows)
