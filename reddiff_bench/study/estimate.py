"""GPU-hours of a run or sweep before it runs, from its solvers' network calls.

    python -m reddiff_bench estimate +experiment=imagenet_inpaint --seconds-per-nfe 0.03 --seconds-per-vjp 0.07
    python -m reddiff_bench estimate +experiment=imagenet_inpaint --measure

Every job of the sweep (the preset's ``hydra.sweeper.params`` and any ``key=a,b`` on the command
line) is composed; each solver is run once on a stand-in network that costs nothing but is counted
like the real one (``DiffusionPrior`` counts the calls), which gives its exact NFE and VJP per
image; a latent solver runs on a stand-in latent prior whose autoencoder is free too, which gives
its decoder and encoder passes and their VJPs. Time per image = NFE x seconds per forward call +
VJP x seconds per backward pass through the network + each autoencoder count x its seconds, per
image (at the run's batch size). ``--measure`` times the job's own model on this
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
from ..priors.base import CallCounter, DiffusionPrior
from ..priors.latent import LatentPrior, LinearAutoencoder
from ..run.settings import compose, space_of

COSTS = tuple(CallCounter.COLUMNS.values())  # nfe, vjp, decoder_calls, decoder_vjp, encoder_calls, encoder_vjp
STAND_IN_LATENT = (4, 8, 8)  # the stand-in latent prior's latents (counts do not depend on shapes)


def counting_prior(schedule, image_shape):
    """Stands in for a model: the same schedule and shape, a free network (zeros), counted calls."""

    class Free(DiffusionPrior):
        def network(self, x_t, t):
            return 0.0 * x_t  # keeps the graph, so backward passes are counted too

    return Free(schedule, image_shape, "counting")


def counting_latent_prior(schedule, image_shape):
    """A stand-in latent prior: a free latent network and a linear autoencoder, counted like a real one."""
    latent = counting_prior(schedule, STAND_IN_LATENT)
    d, k = int(torch.tensor(image_shape).prod()), int(torch.tensor(STAND_IN_LATENT).prod())
    W = torch.linalg.qr(torch.randn(d, k, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    return LatentPrior(latent, LinearAutoencoder(W, torch.zeros(d), STAND_IN_LATENT, image_shape), image_shape,
                       "counting")


def count_calls(cfg) -> dict[str, int]:
    """NFE, VJP and the autoencoder's passes (``COSTS``) for one image (one sample) of the job ``cfg``."""
    solver = instantiate(cfg.solver, _convert_="all")
    task = instantiate(cfg.task, _convert_="all")
    shape = _stand_in_shape(cfg)
    latent = space_of(str(cfg.model.get("_target_"))) == "latent"
    prior = (counting_latent_prior if latent else counting_prior)(VPSchedule.linear(1000), shape)
    artifacts = task.sample_artifacts(shape, make_generator(0, "estimate"))
    operator = task.operator([artifacts], shape)
    x = torch.zeros(1, *shape)
    y = task.measure(operator, x, [make_generator(0, "noise")])
    prior.counter.reset()
    solver.solve(prior, operator, y, sigma_y=task.sigma_y, generators=[make_generator(0, "solver")])
    return prior.counter.columns()


def _stand_in_shape(cfg) -> tuple[int, ...]:
    """A small image (64 px: every task's kernels fit) or the vector dimension of the job."""
    dim = cfg.dataset.get("dim")
    return (int(dim),) if dim is not None else (3, 64, 64)


def seconds_per_call(cfg, device: torch.device, repeats: int = 3) -> tuple[dict[str, float], str]:
    """Seconds per image of each counted call (``COSTS``) of the job's model at its batch size on
    ``device``: a forward call and a backward pass of the network and, for a latent prior, of its
    decoder and encoder (random weights of the architecture if the checkpoint is absent)."""
    try:
        prior = instantiate(cfg.model, _convert_="all")
        what = prior.name
    except Exception as err:  # noqa: BLE001 - an absent checkpoint: time its architecture instead
        name = cfg.model.get("checkpoint_name")
        if name is None:
            raise ConfigError(f"cannot build the model to time it ({err}); give the seconds per call "
                              f"(--seconds-per-nfe, --seconds-per-vjp, ...) instead") from err
        prior = random_adm_prior(name)
        what = f"{prior.name} (the checkpoint is absent: random weights, the same cost)"
    prior = prior.to(device).eval()
    batch = int(cfg.batch_size)
    forward, _ = best_of(network_calls(prior, batch, 1, False, device), device, repeats)
    both, _ = best_of(network_calls(prior, batch, 1, True, device), device, repeats)
    seconds = dict.fromkeys(COSTS, 0.0)
    seconds.update(nfe=forward / batch, vjp=max(both - forward, 0.0) / batch)
    if getattr(prior, "space", "pixel") == "latent":
        z = torch.randn(batch, *prior.latent_shape, device=device)
        x = torch.rand(batch, *prior.image_shape, device=device) * 2 - 1
        for name, fn, inp in (("decoder", prior.autoencoder.decode, z), ("encoder", prior.autoencoder.encode, x)):
            fwd, _ = best_of(_pass(fn, inp, False), device, repeats)
            fwd_bwd, _ = best_of(_pass(fn, inp, True), device, repeats)
            seconds[f"{name}_calls"], seconds[f"{name}_vjp"] = fwd / batch, max(fwd_bwd - fwd, 0.0) / batch
    return seconds, what


def _pass(fn, inp: torch.Tensor, vjp: bool):
    """One pass of an autoencoder half, with or without its vector-Jacobian product."""
    def call() -> None:
        if vjp:
            x = inp.detach().requires_grad_(True)
            out = fn(x)
            torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out))
        else:
            with torch.no_grad():
                fn(inp)
    return call


def estimate(jobs: list[list[str]], seconds: dict[str, float]) -> pd.DataFrame:
    """One row per job: its images, its counts per image (``COSTS``; the autoencoder's only when a
    job has a latent prior), seconds per image and device-hours. ``seconds``: per image of each
    counted call; a latent job needs the autoencoder's."""
    rows = []
    for job in jobs:
        cfg = compose(job)
        counts = count_calls(cfg)
        used = [k for k in COSTS if counts[k]]
        missing = [k for k in used if seconds.get(k) is None]
        if missing:
            raise ConfigError(f"job {' '.join(job)} makes {', '.join(missing)} but their seconds per call are not "
                              f"given: pass --measure, or " + ", ".join(f"--seconds-per-{k.replace('_', '-')}"
                                                                        for k in missing))
        images = int(cfg.dataset.get("num_images") or cfg.dataset.get("num_problems") or 0)
        per_image = sum(counts[k] * seconds[k] for k in used) * int(cfg.n_samples)
        rows.append(dict(job=" ".join(o for o in job if not o.startswith("+experiment")) or "(defaults)",
                         images=images, **counts, seconds_per_image=per_image, hours=images * per_image / 3600))
    frame = pd.DataFrame(rows)
    autoencoder = [k for k in COSTS[2:] if k in frame and not frame[k].any()]
    return frame.drop(columns=autoencoder)  # pixel jobs only: no autoencoder columns
