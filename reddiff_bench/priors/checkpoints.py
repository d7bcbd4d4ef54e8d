"""Known diffusion checkpoints: where they come from, what architecture they hold, and where
they are looked for. A checkpoint is taken from ``model.checkpoint`` if set, else from
``<paths.checkpoint_dir>/<file name>``, else downloaded there (torch.hub style, with a partial
file renamed only when complete) if ``model.download`` is true."""

from __future__ import annotations

import hashlib
import logging
import socket
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

from torch.hub import download_url_to_file

from ..errors import ConfigError
from ..files import ensure_writable_dir, lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    name: str
    url: str
    filename: str
    flags: dict = field(default_factory=dict)
    size_bytes: int | None = None
    sha256: str | None = None
    note: str = ""


REGISTRY: dict[str, Checkpoint] = {
    # guided-diffusion README: the unconditional ImageNet 256x256 model that RED-Diff, DPS and
    # PiGDM evaluate with; its flags as the README prints them.
    "adm_imagenet256_uncond": Checkpoint(
        name="adm_imagenet256_uncond",
        url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
        filename="256x256_diffusion_uncond.pt",
        flags=dict(attention_resolutions="32,16,8", class_cond=False, diffusion_steps=1000, image_size=256,
                   learn_sigma=True, noise_schedule="linear", num_channels=256, num_head_channels=64,
                   num_res_blocks=2, resblock_updown=True, use_fp16=True, use_scale_shift_norm=True),
    ),
    # DPS (Chung et al.) FFHQ 256 model, configs/model_config.yaml of the DPS repository; it is
    # shared through a Google Drive folder (no direct URL): download it by hand.
    "adm_ffhq256": Checkpoint(
        name="adm_ffhq256",
        url="https://drive.google.com/drive/folders/1jElnRoFv7b31fG0v6pTSQkelbSX3xGZh",
        filename="ffhq_10m.pt",
        flags=dict(image_size=256, num_channels=128, num_res_blocks=1, channel_mult="", learn_sigma=True,
                   class_cond=False, attention_resolutions="16", num_heads=4, num_head_channels=64,
                   num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True,
                   use_fp16=False, use_new_attention_order=False),
        note="hosted on Google Drive (DPS README): no direct download; fetch ffhq_10m.pt by hand",
    ),
}


def resolve_checkpoint(entry: Checkpoint, checkpoint: str | None, checkpoint_dir: str, download: bool) -> Path:
    """The local path of ``entry``'s weights, downloading them if allowed; a clear error otherwise."""
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ConfigError(f"checkpoint {path} (model.checkpoint) does not exist. Download {entry.filename} "
                              f"from {entry.url} and point model.checkpoint at it.")
        return path
    path = Path(checkpoint_dir).expanduser() / entry.filename
    if path.is_file():
        _verify(entry, path)
        return path
    how = (f"Download {entry.filename} from {entry.url} and put it at {path} "
           f"(or set model.checkpoint=/path/to/{entry.filename}, or paths.checkpoint_dir).")
    if not download or "drive.google.com" in entry.url:
        reason = entry.note or "automatic download is off (model.download=false)"
        raise ConfigError(f"checkpoint {entry.filename} for model {entry.name!r} not found at {path}; {reason}. {how}")

    ensure_writable_dir(path.parent, "the checkpoint folder", "paths.checkpoint_dir (REDDIFF_BENCH_CHECKPOINTS)")
    with lock(path):  # one download when many jobs start together; the others wait and find it
        if not path.is_file():
            log.info("downloading %s to %s", entry.url, path)
            previous = socket.getdefaulttimeout()
            socket.setdefaulttimeout(20)
            try:
                download_url_to_file(entry.url, str(path), progress=True)  # a temporary file, renamed when complete
            except (urllib.error.URLError, OSError) as err:
                raise ConfigError(f"checkpoint {entry.filename} for model {entry.name!r} not found at {path}, and "
                                  f"downloading {entry.url} failed ({err}). {how}") from err
            finally:
                socket.setdefaulttimeout(previous)
    _verify(entry, path)
    return path


def _verify(entry: Checkpoint, path: Path) -> None:
    if entry.size_bytes is not None and path.stat().st_size != entry.size_bytes:
        raise ConfigError(f"{path} has {path.stat().st_size} bytes, expected {entry.size_bytes}: "
                          f"a partial or different file. Delete it and download {entry.url} again.")
    if entry.sha256 is not None:

        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != entry.sha256:
            raise ConfigError(f"{path} does not match the sha256 of {entry.name}; delete it and download again.")
