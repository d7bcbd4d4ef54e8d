"""Learned priors: a ``diffusers.UNet2DModel`` with its VP schedule.

What the network predicts comes from the scheduler config's ``prediction_type`` (``epsilon``, the
default and ADM's; ``sample``; ``v_prediction``). Learned-sigma networks (ADM: 6 output channels)
keep all channels; the first 3 are the prediction.
Mixed precision (``autocast`` = "fp16" or "bf16") applies on CUDA only; on the CPU the network
runs in float32.
"""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import torch
from torch import Tensor

from ..diffusion import VPSchedule
from ..errors import ConfigError
from .base import DiffusionPrior

_AUTOCAST = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}
PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}  # diffusers name -> ours


class DiffusersPrior(DiffusionPrior):
    def __init__(self, unet, schedule: VPSchedule, name: str, autocast: str = "none",
                 prediction_type: str = "epsilon"):
        channels = int(unet.config.in_channels)
        size = unet.config.sample_size
        size = int(size[0] if isinstance(size, (list, tuple)) else size)
        super().__init__(schedule, (channels, size, size), name)
        if autocast not in _AUTOCAST:
            raise ConfigError(f"autocast must be one of {sorted(_AUTOCAST)}, got {autocast!r}")
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"scheduler prediction_type {prediction_type!r} is not supported "
                              f"(one of {sorted(PREDICTION_TYPES)})")
        self.prediction_type = PREDICTION_TYPES[prediction_type]
        self.unet = unet.eval().requires_grad_(False)
        self.autocast = autocast

    def autocast_context(self, x_t: Tensor):
        """Mixed precision on CUDA when asked; float32 elsewhere."""
        dtype = _AUTOCAST[self.autocast]
        use = dtype is not None and x_t.device.type == "cuda"
        return torch.autocast("cuda", dtype=dtype) if use else contextlib.nullcontext()

    def network(self, x_t: Tensor, t: Tensor) -> Tensor:
        with self.autocast_context(x_t):
            out = self.unet(x_t, t).sample
        return out[:, : self.image_shape[0]].to(x_t.dtype)


def schedule_from_scheduler_config(config: dict) -> VPSchedule:
    """The VP schedule of a diffusers DDPM/DDIM scheduler config (linear or scaled-linear betas,
    or explicit ``trained_betas``)."""
    if config.get("trained_betas") is not None:
        return VPSchedule(torch.tensor(config["trained_betas"], dtype=torch.float64))
    n = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if kind == "linear":
        return VPSchedule(torch.linspace(start, end, n, dtype=torch.float64))
    if kind == "scaled_linear":
        return VPSchedule(torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2)
    raise ConfigError(f"beta_schedule {kind!r} is not supported (linear, scaled_linear or trained_betas)")


def diffusers_prior(source: str, subfolder: str | None = None, name: str | None = None, autocast: str = "none",
                    cache_dir: str | None = None, local_files_only: bool = False) -> DiffusersPrior:
    """A UNet2DModel and its scheduler from a hub id (e.g. ``google/ddpm-celebahq-256``) or a local
    directory (a pipeline with ``unet/`` and ``scheduler/``, or a bare model directory)."""
    from diffusers import UNet2DModel  # heavy, optional: imported when used

    path, local = source_path(source, local_files_only)
    unet_sub = subfolder
    if unet_sub is None and local and (path / "unet").is_dir():
        unet_sub = "unet"
    kwargs = dict(cache_dir=cache_dir, local_files_only=local_files_only)
    try:
        # low_cpu_mem_usage needs accelerate; without it diffusers falls back with a warning per load
        unet = UNet2DModel.from_pretrained(source, subfolder=unet_sub, **kwargs,
                                           low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)
        scheduler_config = load_scheduler_config(source, path if local else None, kwargs)
    except OSError as err:
        raise ConfigError(f"could not load the diffusers model {source!r}: {err}. Without network, download it "
                          f"elsewhere (huggingface-cli download {source}) into the HF cache or a local directory, "
                          f"and set model.source to that directory.") from err
    schedule = schedule_from_scheduler_config(scheduler_config)
    return DiffusersPrior(unet, schedule, name=name or path.name or source, autocast=autocast,
                          prediction_type=str(scheduler_config.get("prediction_type", "epsilon")))


def source_path(source: str, local_files_only: bool) -> tuple[Path, bool]:
    """The path of ``source`` and whether it is a local directory; a local path that is absent
    (or any absent source when offline) is refused."""
    path = Path(source).expanduser()
    local = path.exists()
    if not local and (source.startswith((".", "/", "~")) or local_files_only):
        raise ConfigError(f"model directory {path} does not exist; set model.source to a diffusers hub id "
                          f"or to a directory written by save_pretrained")
    return path, local


def load_scheduler_config(source: str, local: Path | None, kwargs: dict) -> dict:
    """The scheduler config of a hub id (its ``scheduler/``) or of a local directory (``scheduler/``
    or the directory itself; none: ADM's linear schedule)."""
    from diffusers import DDPMScheduler  # heavy, optional: imported when used

    if local is not None:
        for candidate in (local / "scheduler", local):
            if (candidate / "scheduler_config.json").is_file():
                return dict(DDPMScheduler.load_config(str(candidate)))
        return {}  # a bare model directory: ADM's linear schedule, T=1000
    return dict(DDPMScheduler.load_config(source, subfolder="scheduler", **kwargs))


ASSETS = Path(__file__).resolve().parent.parent / "assets"


def bundled_prior(name: str, autocast: str = "none") -> DiffusersPrior:
    """A prior shipped with the package under ``reddiff_bench/assets/<name>`` (diffusers format with
    its model card), loaded without network."""
    path = ASSETS / name
    if not (path / "config.json").is_file():
        raise ConfigError(f"the bundled prior {name!r} is missing ({path} has no config.json); reinstall the "
                          f"package, or train it with `python -m reddiff_bench train out_dir={path}`")
    return diffusers_prior(str(path), name=name, autocast=autocast, local_files_only=True)
