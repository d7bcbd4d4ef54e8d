"""Per-image files of a run directory.

* ``measurements/<image_id>.pt``: the image's artifacts (mask, kernel), its ``y``, and the task
  that made them (name, degradation and noise settings). ``measurements_from=<dir>`` replays them
  in another run, which must have the same task settings: a measurement made under another task
  or noise level is refused, never relabelled.
* ``outputs/<image_id>.png``: the estimate (the sample mean when ``n_samples > 1``), 8-bit, the
  way FID is computed and images are looked at; ``outputs/<image_id>_samples.pt`` holds the
  samples (uint8) when there are several; vectors are saved as float32 ``.pt``. FID/KID and the
  grid are rebuilt from these files at the end of a run, resumed or not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import ConfigError
from ..files import read_or_explain, temporary_sibling
from .identity import flatten
from .store import config_differences


def task_signature(task_config: dict[str, Any]) -> dict[str, Any]:
    """What a measurement depends on: the task's name, degradation and noise settings."""
    return {"name": task_config.get("name"), **flatten({"degradation": task_config.get("degradation"),
                                                        "noise": task_config.get("noise")})}


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = temporary_sibling(path)
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_measurement(folder: Path, image_id: str, record: dict[str, Tensor], signature: dict[str, Any],
                     source: dict[str, str]) -> None:
    """One image's artifacts and y, with the task that made them and ``source``: the dataset and
    the hash of the ground-truth image they were measured on."""
    _atomic_save({**record, "task": json.dumps(signature, default=str), "source": json.dumps(source)},
                 folder / f"{image_id}.pt")


def load_measurements(folder: Path, image_ids: list[str], signature: dict[str, Any],
                      image_hashes: list[str]) -> tuple[list[dict[str, Tensor]], Tensor]:
    """Artifacts and y of an earlier run's images, refused unless made by the same task settings
    on the same images (``image_hashes``: the hashes of this run's ground truth, in order)."""
    artifacts, ys, other = [], [], []
    for image_id, image_hash in zip(image_ids, image_hashes):
        path = folder / f"{image_id}.pt"
        if not path.is_file():
            raise ConfigError(f"no saved measurement {path} for image {image_id!r} (measurements_from={folder}); "
                              f"point measurements_from at the measurements/ folder of a run on the same data.")
        record = read_or_explain(path, lambda p: torch.load(p, map_location="cpu", weights_only=True),
                                 "saved measurement", "Re-create the measurements with the run that made them, or "
                                                      "drop measurements_from.")
        if "task" not in record:
            raise ConfigError(f"{path} does not record the task that made it (written by an older version); "
                              f"re-create the measurements with this version, or drop measurements_from.")
        saved = json.loads(record["task"])
        differences = config_differences(saved, json.loads(json.dumps(signature, default=str)), "when saved",
                                         "in this run")
        if differences:
            raise ConfigError(f"the saved measurement {path} was made by another task than this run's; its y would "
                              f"be relabelled. Differences: " + "; ".join(differences) + ". Run with the task "
                              "settings it was made with, or drop measurements_from.")
        if "source" not in record:
            raise ConfigError(f"{path} does not record the image it was measured on (written by an older version); "
                              f"re-create the measurements with this version, or drop measurements_from.")
        source = json.loads(record["source"])
        if source.get("image_hash") != image_hash:
            other.append(f"{image_id} (measured on dataset {source.get('dataset')!r})")
        artifacts.append({k[len("artifact_"):]: v for k, v in record.items() if k.startswith("artifact_")})
        ys.append(record["y"])
    if other:
        raise ConfigError(f"the saved measurements under {folder} were made on other images than this run's, under "
                          f"the same ids: {', '.join(other[:10])}{' ...' if len(other) > 10 else ''}. Their y would "
                          f"be scored against the wrong ground truth. Point measurements_from at a run on these "
                          f"images, or drop it.")
    return artifacts, torch.stack(ys)


def _is_image(x: Tensor) -> bool:
    return x.ndim == 3 and x.shape[0] in (1, 3)


def to_uint8(x: Tensor) -> Tensor:
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_output(folder: Path, image_id: str, estimate: Tensor, samples: Tensor | None) -> None:
    """``estimate`` (C, H, W) or (d,); ``samples`` (n, ...) when there are several."""
    if _is_image(estimate):

        pixels = to_uint8(estimate).permute(1, 2, 0).numpy()
        tmp = temporary_sibling(folder / f"{image_id}.png")
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(tmp, format="PNG")
        tmp.replace(folder / f"{image_id}.png")
        if samples is not None:
            _atomic_save(to_uint8(samples), folder / f"{image_id}_samples.pt")
    else:
        _atomic_save({"estimate": estimate.detach().float().cpu(),
                      **({"samples": samples.detach().float().cpu()} if samples is not None else {})},
                     folder / f"{image_id}.pt")


UNREADABLE_ESTIMATE = ("Delete it: the run's FID and grid then leave that image out and say so in the summary's "
                       "notes (its row stays).")


def _read_png(path: Path) -> Tensor:
    with Image.open(path) as image:
        pixels = torch.from_numpy(np.array(image)).float()
    return pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)


def load_estimate(folder: Path, image_id: str) -> Tensor:
    """The saved estimate as (1, C, H, W) in [-1, 1] (or (1, d) for vectors); a file that cannot
    be read is refused, naming it and what to do."""
    png = folder / f"{image_id}.png"
    if png.is_file():
        return (read_or_explain(png, _read_png, "saved estimate", UNREADABLE_ESTIMATE) / 127.5 - 1.0)[None]
    path = folder / f"{image_id}.pt"
    record = read_or_explain(path, lambda p: torch.load(p, map_location="cpu", weights_only=True), "saved estimate",
                             UNREADABLE_ESTIMATE)
    return record["estimate"][None]


def has_output(folder: Path, image_id: str) -> bool:
    return (folder / f"{image_id}.png").is_file() or (folder / f"{image_id}.pt").is_file()
