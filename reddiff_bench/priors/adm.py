"""Exact conversion of ADM (openai/guided-diffusion) UNet checkpoints to ``diffusers.UNet2DModel``.

The ADM UNet maps onto UNet2DModel without custom modules (facts checked against the reference
implementation, see the fixture test):

* levels without attention -> ``ResnetDownsampleBlock2D`` / ``ResnetUpsampleBlock2D`` (the plain
  blocks ignore ``downsample_type``), levels with attention -> ``AttnDownBlock2D`` /
  ``AttnUpBlock2D``; ``resblock_updown`` -> ``downsample_type = upsample_type = "resnet"``;
* ``use_scale_shift_norm`` -> ``resnet_time_scale_shift = "scale_shift"``; GroupNorm(32, eps 1e-5)
  everywhere, the mid-block attention included (``attn_norm_num_groups = 32``);
* the sinusoidal timestep embedding puts cos before sin (``flip_sin_to_cos``, ``freq_shift = 0``);
* ``attention_head_dim = num_head_channels``; with the legacy attention order the qkv rows are laid
  out per head as (q, k, v) of that head, with the new order as three blocks (q, k, v).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..files import ensure_writable_dir, publish, temporary_sibling
from .checkpoints import REGISTRY, resolve_checkpoint
from .diffusers_prior import DiffusersPrior, diffusers_prior, schedule_from_scheduler_config


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return bool(value)


@dataclass
class ADMFlags:
    """guided-diffusion's model flags, by their own names and defaults (script_util.py)."""

    image_size: int = 64
    num_channels: int = 128
    num_res_blocks: int = 2
    num_heads: int = 4
    num_heads_upsample: int = -1
    num_head_channels: int = -1
    attention_resolutions: str = "16,8"
    channel_mult: str = ""
    dropout: float = 0.0
    class_cond: bool = False
    use_checkpoint: bool = False
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_fp16: bool = False
    use_new_attention_order: bool = False
    learn_sigma: bool = False

    @classmethod
    def from_dict(cls, flags: dict[str, Any]) -> ADMFlags:
        """Known flags are parsed (strings like "True" or "32,16,8" accepted); unknown ones, such as
        the diffusion flags (``diffusion_steps``, ``noise_schedule``), are ignored."""
        known = {f.name: f for f in fields(cls)}
        values = {}
        for name, value in flags.items():
            if name not in known:
                continue
            kind = known[name].type
            if kind == "bool":
                values[name] = _bool(value)
            elif kind == "int":
                values[name] = int(value)
            elif kind == "float":
                values[name] = float(value)
            else:
                values[name] = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
        return cls(**values)

    def channel_multipliers(self) -> tuple[int, ...]:
        if self.channel_mult:
            return tuple(int(m) for m in str(self.channel_mult).split(","))
        defaults = {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
        if self.image_size not in defaults:
            raise ConfigError(f"ADM derives channel_mult only for image sizes {sorted(defaults)}; "
                              f"give --channel_mult for image_size {self.image_size}")
        return defaults[self.image_size]

    def attention_downsample_rates(self) -> set[int]:
        return {self.image_size // int(r) for r in str(self.attention_resolutions).split(",") if r.strip()}


def unet_config(flags: ADMFlags) -> dict[str, Any]:
    """The ``UNet2DModel`` config equivalent to the ADM model of ``flags``."""
    mult = flags.channel_multipliers()
    if mult[0] != 1:
        raise ConfigError("ADM models whose first channel multiplier is not 1 (e.g. the 512x512 model) "
                          "have no UNet2DModel equivalent here")
    if flags.class_cond:
        raise ConfigError("class-conditional ADM checkpoints are not supported (use the unconditional ones)")
    attn_ds = flags.attention_downsample_rates()
    channels = [flags.num_channels * m for m in mult]
    levels_with_attention = [2**level in attn_ds for level in range(len(mult))]
    if flags.num_head_channels == -1:
        head_dims = {ch // flags.num_heads for ch, a in zip(channels + [channels[-1]],
                                                            levels_with_attention + [True]) if a}
        if len(head_dims) != 1 or flags.num_heads_upsample not in (-1, flags.num_heads):
            raise ConfigError("ADM models with a fixed number of heads over levels of different widths "
                              "(num_head_channels=-1) have no UNet2DModel equivalent")
        head_dim = head_dims.pop()
    else:
        head_dim = flags.num_head_channels
    return dict(
        sample_size=flags.image_size,
        in_channels=3,
        out_channels=6 if flags.learn_sigma else 3,
        center_input_sample=False,
        time_embedding_type="positional",
        flip_sin_to_cos=True,
        freq_shift=0,
        # levels without attention: res blocks that resample (resblock_updown), else strided / upsampling convs
        down_block_types=tuple("AttnDownBlock2D" if a else "ResnetDownsampleBlock2D" if flags.resblock_updown
                               else "DownBlock2D" for a in levels_with_attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "ResnetUpsampleBlock2D" if flags.resblock_updown
                             else "UpBlock2D" for a in reversed(levels_with_attention)),
        block_out_channels=tuple(channels),
        layers_per_block=flags.num_res_blocks,
        mid_block_scale_factor=1,
        downsample_padding=1,
        downsample_type="resnet" if flags.resblock_updown else "conv",
        upsample_type="resnet" if flags.resblock_updown else "conv",
        dropout=flags.dropout,
        act_fn="silu",
        attention_head_dim=head_dim,
        norm_num_groups=32,
        attn_norm_num_groups=32,
        norm_eps=1e-5,
        resnet_time_scale_shift="scale_shift" if flags.use_scale_shift_norm else "default",
        add_attention=True,
    )


_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


class _Converter:
    def __init__(self, state: dict[str, Tensor], flags: ADMFlags):
        self.src = dict(state)
        self.out: dict[str, Tensor] = {}
        self.flags = flags

    def take(self, src: str, dst: str) -> None:
        self.out[dst] = self.src.pop(src)

    def resnet(self, src: str, dst: str) -> None:
        for a, b in _RESNET.items():
            for p in ("weight", "bias"):
                if f"{src}.{a}.{p}" in self.src:
                    self.take(f"{src}.{a}.{p}", f"{dst}.{b}.{p}")

    def attention(self, src: str, dst: str, channels: int) -> None:
        flags = self.flags
        head_dim = flags.num_head_channels if flags.num_head_channels != -1 else channels // flags.num_heads
        heads = channels // head_dim
        self.take(f"{src}.norm.weight", f"{dst}.group_norm.weight")
        self.take(f"{src}.norm.bias", f"{dst}.group_norm.bias")
        w = self.src.pop(f"{src}.qkv.weight").reshape(3 * channels, channels)
        b = self.src.pop(f"{src}.qkv.bias")
        if self.flags.use_new_attention_order:  # three blocks: q | k | v, each split into heads
            ws, bs = w.reshape(3, channels, channels), b.reshape(3, channels)
        else:  # legacy: per head, (q, k, v) of that head
            ws = w.reshape(heads, 3, head_dim, channels).transpose(0, 1).reshape(3, channels, channels)
            bs = b.reshape(heads, 3, head_dim).transpose(0, 1).reshape(3, channels)
        for i, name in enumerate(("to_q", "to_k", "to_v")):
            self.out[f"{dst}.{name}.weight"] = ws[i].contiguous()
            self.out[f"{dst}.{name}.bias"] = bs[i].contiguous()
        self.out[f"{dst}.to_out.0.weight"] = self.src.pop(f"{src}.proj_out.weight").reshape(channels, channels)
        self.take(f"{src}.proj_out.bias", f"{dst}.to_out.0.bias")

    def updown(self, src: str, dst: str) -> None:
        if self.flags.resblock_updown:
            self.resnet(src, dst)
        else:
            self.take(f"{src}.op.weight" if f"{src}.op.weight" in self.src else f"{src}.conv.weight",
                      f"{dst}.conv.weight")
            self.take(f"{src}.op.bias" if f"{src}.op.bias" in self.src else f"{src}.conv.bias", f"{dst}.conv.bias")

    def run(self) -> dict[str, Tensor]:
        f = self.flags
        mult = f.channel_multipliers()
        attn_ds = f.attention_downsample_rates()
        for i, name in ((0, "linear_1"), (2, "linear_2")):
            self.take(f"time_embed.{i}.weight", f"time_embedding.{name}.weight")
            self.take(f"time_embed.{i}.bias", f"time_embedding.{name}.bias")
        self.take("input_blocks.0.0.weight", "conv_in.weight")
        self.take("input_blocks.0.0.bias", "conv_in.bias")
        block, ds = 1, 1
        for level, m in enumerate(mult):
            ch = f.num_channels * m
            for i in range(f.num_res_blocks):
                self.resnet(f"input_blocks.{block}.0", f"down_blocks.{level}.resnets.{i}")
                if ds in attn_ds:
                    self.attention(f"input_blocks.{block}.1", f"down_blocks.{level}.attentions.{i}", ch)
                block += 1
            if level != len(mult) - 1:
                self.updown(f"input_blocks.{block}.0", f"down_blocks.{level}.downsamplers.0")
                block += 1
                ds *= 2
        top = f.num_channels * mult[-1]
        self.resnet("middle_block.0", "mid_block.resnets.0")
        self.attention("middle_block.1", "mid_block.attentions.0", top)
        self.resnet("middle_block.2", "mid_block.resnets.1")
        block = 0
        for up, level in enumerate(reversed(range(len(mult)))):
            ch = f.num_channels * mult[level]
            for i in range(f.num_res_blocks + 1):
                self.resnet(f"output_blocks.{block}.0", f"up_blocks.{up}.resnets.{i}")
                sub = 1
                if ds in attn_ds:
                    self.attention(f"output_blocks.{block}.1", f"up_blocks.{up}.attentions.{i}", ch)
                    sub = 2
                if level and i == f.num_res_blocks:
                    self.updown(f"output_blocks.{block}.{sub}", f"up_blocks.{up}.upsamplers.0")
                    ds //= 2
                block += 1
        self.take("out.0.weight", "conv_norm_out.weight")
        self.take("out.0.bias", "conv_norm_out.bias")
        self.take("out.2.weight", "conv_out.weight")
        self.take("out.2.bias", "conv_out.bias")
        if self.src:
            raise ValueError(f"{len(self.src)} ADM weights were not converted (do the flags match the checkpoint?): "
                             f"{sorted(self.src)[:5]}")
        return self.out


def convert_state_dict(state: dict[str, Tensor], flags: ADMFlags) -> dict[str, Tensor]:
    """ADM state dict -> UNet2DModel state dict (raises if any weight is left over)."""
    try:
        return _Converter(state, flags).run()
    except KeyError as err:
        raise ValueError(f"ADM weight {err} is missing: do the model flags match the checkpoint?") from err


def build_unet(state: dict[str, Tensor], flags: ADMFlags):
    """A ``UNet2DModel`` holding the converted weights (strict: no missing or unexpected keys)."""
    from diffusers import UNet2DModel  # heavy, optional: imported when used

    model = UNet2DModel(**unet_config(flags))
    converted = convert_state_dict(state, flags)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise ValueError(f"conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def scheduler_config(flags: dict[str, Any]) -> dict[str, Any]:
    """A diffusers DDPMScheduler config for ADM's linear schedule (betas rescaled by 1000 / T)."""
    steps = int(flags.get("diffusion_steps", 1000))
    if str(flags.get("noise_schedule", "linear")) != "linear":
        raise ConfigError("only ADM's linear noise schedule is supported")
    scale = 1000.0 / steps
    return {"_class_name": "DDPMScheduler", "num_train_timesteps": steps, "beta_start": 1e-4 * scale,
            "beta_end": 0.02 * scale, "beta_schedule": "linear", "prediction_type": "epsilon",
            "variance_type": "learned_range" if _bool(flags.get("learn_sigma", False)) else "fixed_small",
            "clip_sample": False}


def convert_checkpoint(checkpoint: str | Path, flags: dict[str, Any], out_dir: str | Path) -> Path:
    """Convert an ADM ``.pt`` state dict into a diffusers directory: the UNet2DModel at the top
    (``UNet2DModel.from_pretrained(out_dir)``) and ``scheduler/`` with ADM's schedule. Written
    into a temporary sibling, then renamed over ``out_dir`` (replacing an older conversion)."""

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(out_dir, directory=True)
    try:
        _write_converted(checkpoint, flags, tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def _write_converted(checkpoint: str | Path, flags: dict[str, Any], target: Path) -> None:

    try:
        state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    except Exception as err:  # truncated downloads fail inside the zip or pickle reader
        raise ConfigError(f"checkpoint {checkpoint} cannot be read ({type(err).__name__}: {err}): a partial or "
                          f"corrupt file. Delete it and download it again (or point model.checkpoint at a good "
                          f"copy).") from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"{checkpoint} is not an ADM state dict (a dict of tensors): delete it, download it again "
                          f"and point model.checkpoint (or paths.checkpoint_dir) at it.")
    unet = build_unet(state, ADMFlags.from_dict(flags))
    unet.save_pretrained(str(target))
    (target / "scheduler").mkdir(parents=True, exist_ok=True)
    (target / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config(flags), indent=2))
    (target / "adm_flags.json").write_text(json.dumps({k: v for k, v in flags.items()}, indent=2, default=str))


def adm_prior(checkpoint_name: str, checkpoint: str | None = None, checkpoint_dir: str = ".",
              cache_dir: str = ".", download: bool = True, autocast: str = "none"):
    """A known ADM checkpoint (see ``checkpoints.REGISTRY``) as a prior: found or downloaded,
    converted once to diffusers format (cached under ``cache_dir/converted``), then loaded."""

    if checkpoint_name not in REGISTRY:
        raise ConfigError(f"unknown ADM checkpoint {checkpoint_name!r}; known: {sorted(REGISTRY)}")
    entry = REGISTRY[checkpoint_name]
    path = resolve_checkpoint(entry, checkpoint, checkpoint_dir, download)
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    folder = ensure_writable_dir(Path(cache_dir) / "converted", "the cache folder",
                                 "paths.cache_dir (REDDIFF_BENCH_CACHE)")
    out_dir = folder / f"{entry.name}-{key}"
    # converted once, under a lock, when many jobs start together; a half-written one never shows
    publish(out_dir, lambda tmp: _write_converted(path, entry.flags, tmp), directory=True)
    return diffusers_prior(str(out_dir), name=entry.name, autocast=autocast, local_files_only=True)


def random_adm_prior(checkpoint_name: str = "adm_imagenet256_uncond", image_size: int | None = None,
                     autocast: str = "none", seed: int = 0):
    """The architecture of a known ADM checkpoint with random weights, built offline: its cost
    (time, memory) is the real network's, its outputs are not. For timing, memory profiles and
    GPU-hour estimates; ``image_size`` changes the input side (the same layers)."""
    from diffusers import UNet2DModel  # heavy, optional: imported when used

    if checkpoint_name not in REGISTRY:
        raise ConfigError(f"unknown ADM checkpoint {checkpoint_name!r}; known: {sorted(REGISTRY)}")
    flags = dict(REGISTRY[checkpoint_name].flags)
    config = unet_config(ADMFlags.from_dict(flags))
    if image_size is not None:
        config["sample_size"] = int(image_size)
    torch.manual_seed(seed)
    unet = UNet2DModel(**config)
    schedule_config = scheduler_config(flags)

    name = f"{checkpoint_name}-random{'' if image_size is None else f'-{image_size}px'}"
    return DiffusersPrior(unet, schedule_from_scheduler_config(schedule_config), name=name, autocast=autocast,
                          prediction_type="epsilon")
