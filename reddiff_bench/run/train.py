"""Train the small offline diffusion prior: ``python -m reddiff_bench train [overrides]``.

A ``diffusers.UNet2DModel`` learns the DDPM denoising objective under ADM's linear betas (T = 1000),
on random crops of the scikit-image training photos (``data.photos.TRAIN_PHOTOS``), with AdamW and
an EMA of the weights (with the usual warm-up, ``min(decay, (1 + n) / (10 + n))``). ``prediction``
picks the network's target, written to the scheduler config as diffusers names it:

* ``epsilon``: ``E ||eps_theta(x_t, t) - eps||^2``, DDPM's loss;
* ``v_prediction`` (default): ``E ||v_theta(x_t, t) - v||^2`` with ``v = sqrt(abar) eps - sqrt(1 - abar) x0``,
  the same minimiser (the posterior mean) weighted by ``1 / abar_t``. For a small network trained
  briefly it is the better choice: an eps-network's ``x0_hat = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar)``
  multiplies its error by ``sqrt((1 - abar) / abar)`` (25 at t = 800), while ``x0_hat`` from ``v`` carries
  it at most once. The solvers use ``x0_hat`` at every t. The EMA weights are saved in diffusers format
(safetensors) with a model card that reports the denoising error (MSE of ``x0_hat`` per pixel) on
held-out crops at several noise levels and the DDPM loss over all of them, beside the exact GMM
prior's and the exact minimiser of the training objective on the same inputs.
``evaluate_only=true out_dir=DIR`` measures a trained prior again and rewrites its card.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from ..data.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, random_crops
from ..diffusion import VPSchedule
from ..errors import ConfigError
from ..priors.adm import scheduler_config
from ..priors.diffusers_prior import DiffusersPrior, diffusers_prior
from ..priors.gmm import photo_gmm_prior

log = logging.getLogger(__name__)


def new_unet(size: int, unet_cfg: dict):
    """A fresh (untrained) diffusers UNet2DModel for images of side ``size``."""
    from diffusers import UNet2DModel  # heavy, optional: imported when used

    return UNet2DModel(sample_size=size, in_channels=3, out_channels=3, **unet_cfg)


@torch.no_grad()
def denoising_error(predict_x0, crops: torch.Tensor, schedule: VPSchedule, timesteps: list[int],
                    seed: int = 1234) -> dict[int, float]:
    """Per-pixel MSE of ``x0_hat(x_t, t)`` against ``x0`` on ``crops``, per timestep, with fixed noise."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in timesteps:
        eps = torch.randn(crops.shape, generator=g)
        tt = torch.full((crops.shape[0],), t, dtype=torch.long)
        x_t = schedule.add_noise(crops, tt, eps)
        x0 = torch.cat([predict_x0(x_t[i : i + 256], tt[i : i + 256]) for i in range(0, len(crops), 256)])
        out[t] = float(((x0 - crops) ** 2).mean())
    return out


@torch.no_grad()
def heldout_loss(predict_x0, crops: torch.Tensor, schedule: VPSchedule, seed: int = 1234, repeats: int = 4) -> float:
    """The DDPM objective ``L_simple = E_t,eps ||eps_hat - eps||^2`` (per pixel) on ``crops``: the
    training loss, integrated over every noise level, measured on data the network never saw.
    ``repeats`` noisy copies of each crop, their timesteps stratified over 0..T-1, noise fixed by
    ``seed``; ``eps_hat`` follows from ``x0_hat``. A denoiser no better than ``x_t`` itself scores 1."""
    g = torch.Generator().manual_seed(seed)
    n = len(crops) * repeats
    t = ((torch.arange(n) + torch.rand(n, generator=g)) * (schedule.num_steps / n)).long()
    t = t[torch.randperm(n, generator=g)]
    x0 = crops.repeat(repeats, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=g)
    x_t = schedule.add_noise(x0, t, eps)
    total = 0.0
    for i in range(0, n, 256):
        x0_hat = predict_x0(x_t[i : i + 256], t[i : i + 256])
        eps_hat = schedule.eps_from_x0(x_t[i : i + 256], t[i : i + 256], x0_hat)
        total += float(((eps_hat - eps[i : i + 256]) ** 2).sum())
    return total / eps.numel()


def empirical_posterior_mean(reference: Tensor, schedule: VPSchedule):
    """``x0_hat(x_t, t) = E[x0 | x_t]`` when ``x0`` is drawn uniformly from the crops ``reference``:
    the exact minimiser of the DDPM objective on that training distribution, which a network of
    unbounded capacity trained to convergence would compute. Computed in float64. With a finite set
    it memorises at low noise (it can only return mixtures of the reference crops); at high noise,
    where many crops share the weight, it is the target the network is fitted to."""
    ref = reference.flatten(1).double()
    ref_sq = (ref**2).sum(1).view(1, -1)

    def predict_x0(x_t: Tensor, t: Tensor) -> Tensor:
        xt = x_t.flatten(1).double()
        logit = _log_likelihood(xt @ ref.T, ref_sq, schedule.abar_t(t).double().to(xt.device).view(-1, 1))
        return (logit.softmax(1) @ ref).to(x_t.dtype).view_as(x_t)

    return predict_x0


def _log_likelihood(xt_dot_x0: Tensor, x0_sq: Tensor, abar: Tensor) -> Tensor:
    """``log N(x_t; sqrt(abar) x0, (1 - abar) I)`` up to a term that depends on ``x_t`` only, from
    ``<x_t, x0>`` and ``||x0||^2``."""
    return abar.sqrt() / (1 - abar) * xt_dot_x0 - 0.5 * abar / (1 - abar) * x0_sq


def augment(x: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Per-crop symmetries: ``hflip`` (left-right flips) or ``dihedral`` (the 8 flips and quarter
    turns of the square); ``none`` leaves the crops as they are."""
    if kind == "none":
        return x
    if kind not in ("hflip", "dihedral"):
        raise ConfigError(f"augment must be none, hflip or dihedral, got {kind!r}")
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if kind == "dihedral":
        turns = torch.randint(0, 4, (x.shape[0],), generator=generator)
        x = torch.stack([torch.rot90(img, int(k), dims=(-2, -1)) for img, k in zip(x, turns)])
    return x


def training_crops(cfg: DictConfig, generator: torch.Generator, count: int | None = None) -> Tensor:
    """``batch_size`` (or ``count``) random crops of the training photos. The photos are resized by
    ``scale`` (as the held-out crops), or, with ``train_scales`` set, each crop comes from the photos
    resized by one of those factors drawn at random: a scale augmentation that keeps the photos' colours."""
    scales = [float(s) for s in (cfg.get("train_scales") or [cfg.scale])]
    if min(scales) <= 0:
        raise ConfigError(f"train_scales must be positive resize factors, got {scales}")
    count = int(cfg.batch_size) if count is None else count
    if len(scales) == 1:
        return random_crops(TRAIN_PHOTOS, cfg.size, count, scales[0], generator)
    counts = torch.bincount(torch.randint(0, len(scales), (count,), generator=generator),
                            minlength=len(scales))
    return torch.cat([random_crops(TRAIN_PHOTOS, cfg.size, int(n), s, generator)
                      for s, n in zip(scales, counts.tolist()) if n > 0])


def sample_timesteps(n: int, cfg: DictConfig, generator: torch.Generator, num_steps: int = 1000) -> Tensor:
    """Training timesteps: uniform on 0..T-1, except that a fraction ``t_focus_fraction`` of the
    batch (0 by default) is drawn uniformly from ``t_focus = [lo, hi]`` instead, where the network
    has most to learn (mid noise levels, where the denoiser depends on the crop's global structure)."""
    t = torch.randint(0, num_steps, (n,), generator=generator)
    fraction = float(cfg.get("t_focus_fraction", 0.0) or 0.0)
    if fraction == 0.0:
        return t
    lo, hi = (int(v) for v in cfg.t_focus)
    if not (0 <= lo <= hi < num_steps and 0.0 < fraction <= 1.0):
        raise ConfigError(f"t_focus must be [lo, hi] with 0 <= lo <= hi < {num_steps} and t_focus_fraction in "
                          f"[0, 1], got {list(cfg.t_focus)} and {fraction}")
    focus = torch.rand(n, generator=generator) < fraction
    return torch.where(focus, torch.randint(lo, hi + 1, (n,), generator=generator), t)


def reference_pool(cfg: DictConfig, generator: torch.Generator) -> Tensor | None:
    """The ``stf_pool`` training crops (drawn and augmented as the batches are) from which each step
    takes its ``stf_reference`` reference crops; None when the stable target is off."""
    n_ref, n_pool = int(cfg.get("stf_reference", 0) or 0), int(cfg.get("stf_pool", 0) or 0)
    if n_ref == 0:
        return None
    if not 0 < n_ref <= n_pool:
        raise ConfigError(f"stf_reference must be 0 (off) or at most stf_pool, got {n_ref} and {n_pool}")
    return crop_pool(cfg, n_pool, generator)


def crop_pool(cfg: DictConfig, count: int, generator: torch.Generator, chunk: int = 1024) -> Tensor:
    """``count`` training crops, drawn and augmented as the batches are, in chunks of ``chunk``."""
    return torch.cat([augment(training_crops(cfg, generator, min(chunk, count - start)), cfg.augment, generator)
                      for start in range(0, count, chunk)])


def stable_target(x_t: Tensor, t: Tensor, x0: Tensor, reference: Tensor, schedule: VPSchedule) -> Tensor:
    """The Stable Target Field (Xu et al., ICLR 2023) estimate of ``E[x0 | x_t]`` for the DDPM loss:
    the mean of the candidates ``{x0_i} + reference``, weighted by ``N(x_t; sqrt(abar) x0_j, (1 - abar) I)``.
    Its own clean crop dominates at low noise (the usual target); at mid and high noise the target
    averages over many crops, which removes most of the target's noise (the minimiser, the posterior
    mean, stays the same as the reference set grows). Computed in float64."""
    xt, own, ref = (v.flatten(1).double() for v in (x_t, x0, reference))
    abar = schedule.abar_t(t).double().to(xt.device).view(-1, 1)
    own_logit = _log_likelihood((xt * own).sum(1, keepdim=True), (own**2).sum(1, keepdim=True), abar)
    ref_logit = _log_likelihood(xt @ ref.T, (ref**2).sum(1).view(1, -1), abar)
    w = torch.cat([own_logit, ref_logit], 1).softmax(1)
    target = w[:, :1] * own + w[:, 1:] @ ref
    return target.to(x0.dtype).view_as(x0)


def learning_rate(cfg: DictConfig, step: int, minutes: float) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine decay to 0 over the run, whose
    progress is the larger of step / steps and minutes / max_minutes (training stops at either)."""
    lr = float(cfg.lr) * min(1.0, (step + 1) / max(1, int(cfg.warmup_steps)))
    if cfg.lr_schedule == "constant":
        return lr
    if cfg.lr_schedule != "cosine":
        raise ConfigError(f"lr_schedule must be constant or cosine, got {cfg.lr_schedule!r}")
    progress = min(1.0, max(step / int(cfg.steps), minutes / float(cfg.max_minutes)))
    return lr * 0.5 * (1 + math.cos(math.pi * progress))


def train(cfg: DictConfig) -> Path:
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    torch.manual_seed(cfg.seed)
    schedule = VPSchedule.linear(1000)
    unet = new_unet(cfg.size, OmegaConf.to_container(cfg.unet)).to(device)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    ema_prior = DiffusersPrior(ema, schedule.to(device), "ema", prediction_type=cfg.prediction)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    eval_crops = card_crops(cfg)
    stf_generator = torch.Generator().manual_seed(cfg.seed + 1)  # leaves the batches' stream as it is
    pool = reference_pool(cfg, stf_generator)

    def ema_x0(x_t, t):
        return ema_prior.predict(x_t.to(device), t.to(device)).x0.cpu()

    start, step, history = time.perf_counter(), 0, []
    n_params = sum(p.numel() for p in unet.parameters())
    log.info("training a %.2fM-parameter UNet on %s for up to %d steps / %.0f min", n_params / 1e6, device,
             cfg.steps, cfg.max_minutes)
    while step < cfg.steps and (time.perf_counter() - start) / 60 < cfg.max_minutes:
        x0 = augment(training_crops(cfg, generator), cfg.augment, generator).to(device)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step, (time.perf_counter() - start) / 60)
        t = sample_timesteps(x0.shape[0], cfg, generator).to(device)
        eps = torch.randn(x0.shape, generator=generator).to(device)
        x_t = schedule.add_noise(x0, t, eps)
        if pool is not None:  # the stable target: E[x0 | x_t] estimated over reference crops
            pick = torch.randint(0, len(pool), (int(cfg.stf_reference),), generator=stf_generator)
            x0 = stable_target(x_t, t, x0, pool[pick].to(device), schedule)
            eps = schedule.eps_from_x0(x_t, t, x0)
        target = {"epsilon": eps, "sample": x0, "v_prediction": schedule.v_target(x0, t, eps)}[cfg.prediction]
        loss = ((unet(x_t, t).sample - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay = min(float(cfg.ema_decay), (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        step += 1
        if step % cfg.eval_every == 0:
            err = denoising_error(ema_x0, eval_crops, schedule, list(cfg.eval_timesteps), cfg.eval_noise_seed)
            history.append({"step": step, "minutes": (time.perf_counter() - start) / 60, "loss": float(loss.detach()),
                            **err})
            log.info("step %d loss %.4f held-out x0 MSE %s", step, float(loss.detach()), err)
    minutes = (time.perf_counter() - start) / 60
    out = Path(cfg.out_dir)
    ema.save_pretrained(str(out), safe_serialization=True)
    (out / "scheduler").mkdir(parents=True, exist_ok=True)
    scheduler = {**scheduler_config({}), "prediction_type": cfg.prediction}
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
    report = {"steps": step, "minutes": minutes, "device": str(device), "parameters": n_params,
              "prediction": cfg.prediction, "batch_size": cfg.batch_size, "history": history,
              "config": OmegaConf.to_container(cfg, resolve=True)}
    write_card(cfg, out, ema_x0, schedule, report)
    return out


def evaluate(cfg: DictConfig) -> Path:
    """Measure a trained prior in ``out_dir`` again (``evaluate_only=true``) and rewrite its model
    card and training.json; the training record (steps, time, history) is kept."""

    out = Path(cfg.out_dir)
    record = out / "training.json"
    if not record.is_file():
        raise ConfigError(f"evaluate_only: {record} is missing; point out_dir at a directory written by "
                          f"`python -m reddiff_bench train`")
    report = json.loads(record.read_text())
    for key in ("heldout_x0_mse", "gmm_heldout_x0_mse"):  # the measurements of earlier versions
        report.pop(key, None)
    if "config" in report:  # describe the training run as it was configured
        measuring = {key: cfg[key] for key in _MEASUREMENT_KEYS}
        cfg = OmegaConf.merge(OmegaConf.create(report["config"]), measuring)
    else:
        log.warning("%s does not record the training config; the card describes the current one", record)
    prior = diffusers_prior(str(out), local_files_only=True)
    write_card(cfg, out, lambda x_t, t: prior.predict(x_t, t).x0, prior.schedule, report)
    return out


_MEASUREMENT_KEYS = ("out_dir", "eval_crops", "eval_seed", "eval_noise_seed", "eval_timesteps", "compare_gmm",
                     "minimiser_pool", "paths")


def card_crops(cfg: DictConfig) -> Tensor:
    """The held-out crops of the model card (and of the training log's evaluations)."""
    generator = torch.Generator().manual_seed(int(cfg.eval_seed))
    return random_crops(HELDOUT_PHOTOS, cfg.size, cfg.eval_crops, cfg.scale, generator)


def write_card(cfg: DictConfig, out: Path, predict_x0, schedule: VPSchedule, report: dict) -> None:
    """Measure the network on the held-out crops (x0 error per noise level and the DDPM loss over
    all of them), beside the exact GMM prior and the exact minimiser of the training objective, and
    write training.json and the model card README.md."""
    timesteps, crops = list(cfg.eval_timesteps), card_crops(cfg)
    rows = {"network": predict_x0}
    if cfg.compare_gmm:

        gmm = photo_gmm_prior(size=cfg.size, scale=cfg.scale, cache_dir=cfg.paths.cache_dir)
        if not torch.allclose(gmm.schedule.abar, schedule.abar):
            raise ConfigError("the GMM prior and the network have different noise schedules; their denoising "
                              "errors would not be measured on the same noisy inputs")
        rows["gmm"] = lambda x_t, t: gmm.predict(x_t, t).x0
    if int(cfg.minimiser_pool) > 0:
        pool = crop_pool(cfg, int(cfg.minimiser_pool), torch.Generator().manual_seed(cfg.seed + 2))
        rows["minimiser"] = empirical_posterior_mean(pool, schedule)
    noise = int(cfg.eval_noise_seed)
    report["heldout"] = {name: {"x0_mse": denoising_error(f, crops, schedule, timesteps, noise)}
                         for name, f in rows.items()}
    for name in ("network", "gmm"):  # not the minimiser's: at low noise it memorises, which dominates this loss
        if name in rows:
            report["heldout"][name]["ddpm_loss"] = heldout_loss(rows[name], crops, schedule, noise)
    (out / "training.json").write_text(json.dumps(report, indent=2))
    (out / "README.md").write_text(model_card(cfg, report))


def _t_sampling(cfg: DictConfig) -> str:
    fraction = float(cfg.get("t_focus_fraction", 0.0) or 0.0)
    if fraction == 0.0:
        return "uniform on 0..999"
    return f"uniform on 0..999, {fraction:g} of each batch uniform on {list(cfg.t_focus)}"


def _scales(cfg: DictConfig) -> str:
    scales = cfg.get("train_scales")
    if not scales:
        return f"{cfg.scale:g}"
    return f"one of {', '.join(f'{float(s):g}' for s in scales)} at random per crop; held-out crops at {cfg.scale:g}"


def _regression_target(cfg: DictConfig) -> str:
    n_ref = int(cfg.get("stf_reference", 0) or 0)
    if n_ref == 0:
        return "the drawn crop and noise (the plain DDPM target)"
    return (f"the stable target field (Xu et al. 2023) over {n_ref} reference crops per step, "
            f"drawn from a pool of {int(cfg.stf_pool)} training crops")


def model_card(cfg: DictConfig, report: dict) -> str:
    held = report["heldout"]
    names = [n for n in ("network", "gmm", "minimiser") if n in held]
    heads = {"network": "this network", "gmm": "GMM prior (exact for its own mixture)",
             "minimiser": f"exact minimiser over {int(cfg.minimiser_pool)} training crops"}
    rows = "\n".join(f"| {t} | " + " | ".join(f"{held[n]['x0_mse'][t]:.5f}" for n in names) + " |"
                     for t in held["network"]["x0_mse"])
    loss = " | ".join(f"{held[n]['ddpm_loss']:.4f}" if "ddpm_loss" in held[n] else "-" for n in names)
    note = ""
    if "minimiser" in held:
        note = f"""
The last column is `E[x0 | x_t]` under the training distribution itself (the {int(cfg.minimiser_pool)} crops
drawn and augmented as the batches are): what the DDPM objective is minimised by, computed exactly.
At low noise it only memorises (its error there says nothing about the network, and its DDPM loss
is left out); at high noise, where many crops share the weight, it is the function the network is
fitted to: where it does no better than the GMM prior on held-out crops, the limit is the training
photos, not the training.
"""
    return f"""# photos_unet{cfg.size}: a small diffusion prior trained offline

- Data: random {cfg.size}x{cfg.size} RGB crops of the scikit-image photos {', '.join(TRAIN_PHOTOS)}
  (resized by {_scales(cfg)}); the held-out photos ({', '.join(HELDOUT_PHOTOS)}) are never seen.
- Model: diffusers UNet2DModel, {report['parameters'] / 1e6:.2f}M parameters, predicting `{cfg.prediction}`,
  ADM linear betas 1e-4..0.02, T = 1000; EMA ({cfg.ema_decay}) weights.
- Training: {report['steps']} steps of batch {report['batch_size']}, AdamW lr {cfg.lr} ({cfg.lr_schedule},
  {cfg.warmup_steps} warm-up steps), augmentation `{cfg.augment}`, timesteps {_t_sampling(cfg)},
  regression target built from {_regression_target(cfg)},
  {report['minutes']:.1f} minutes on {report['device']}.
- Command: `python -m reddiff_bench train` (conf/train.yaml).

Denoising error on {cfg.eval_crops} held-out crops (crop seed {cfg.eval_seed}, noise seed {cfg.eval_noise_seed}):
per-pixel MSE of x0_hat on the [-1, 1] scale (lower is better), the same noisy inputs for every column. The last row
is the DDPM loss (per-pixel MSE of eps_hat, t stratified over 0..999, 4 noisy copies per crop),
the training objective over all noise levels:

| t | {' | '.join(heads[n] for n in names)} |
|---|{'---|' * len(names)}
{rows}
| DDPM loss, all t | {loss} |
{note}"""
