"""FID/KID reference sets that need the data layer: the features of a folder of images, computed
once and cached under a lock (``paths.cache_dir/fid_reference/folder-<key>.npz``, the key from the
folder, its files' names, sizes and times, and the image side), and the statistics file that
``python -m reddiff_bench fid-stats`` writes."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from ..data import ImageFolder
from ..files import publish, read_or_explain
from ..metrics.fid import FEATURE_EXTRACTOR, InceptionFeatures, Reference, gaussian_stats

log = logging.getLogger(__name__)


def folder_key(dataset: ImageFolder) -> str:
    h = hashlib.sha256(f"{dataset.root.resolve()}|{dataset.size}|{FEATURE_EXTRACTOR}".encode())
    for path in dataset.files:
        stat = path.stat()
        h.update(f"{path.relative_to(dataset.root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def compute_features(dataset: ImageFolder, net: torch.nn.Module, device: torch.device | str = "cpu",
                     batch_size: int = 50) -> np.ndarray:
    """pool3 features (n, 2048) of every image of ``dataset`` (ADM preprocessing at its side)."""
    device = torch.device(device)
    out = []
    for first in range(0, len(dataset), batch_size):
        batch = torch.stack([dataset[k][1] for k in range(first, min(first + batch_size, len(dataset)))])
        out.append(net(batch.to(device)).cpu().double().numpy())
        log.info("reference features: %d of %d images", min(first + batch_size, len(dataset)), len(dataset))
    return np.concatenate(out)


def folder_reference(root: Path, net: torch.nn.Module | None, *, size: int, cache_dir: str | Path | None,
                     device: torch.device | str = "cpu") -> Reference:
    """The reference set of the images under ``root`` at ``size`` (their features cached)."""
    dataset = ImageFolder(str(root), size=size, name=root.name)
    net = net if net is not None else InceptionFeatures().to(device)

    def build(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, features=compute_features(dataset, net, device), extractor=FEATURE_EXTRACTOR)

    description = f"image folder {root.name} ({len(dataset)} images at {size}px)"
    if cache_dir is None:
        return Reference(description, features=compute_features(dataset, net, device))
    cached = publish(Path(cache_dir).expanduser() / "fid_reference" / f"folder-{folder_key(dataset)}.npz", build)
    features = read_or_explain(cached, lambda p: np.load(p)["features"], "cached FID reference features")
    return Reference(description, features=features)


def write_statistics(root: Path, out: Path, *, size: int, device: torch.device | str = "cpu",
                     features_too: bool = False) -> dict[str, object]:
    """pytorch-fid's statistics file (``mu``, ``sigma``; plus ``extractor``) of the images under
    ``root``; with ``features_too`` also ``features`` (what KID needs). Returns what it wrote."""
    dataset = ImageFolder(str(root), size=size, name=root.name)
    features = compute_features(dataset, InceptionFeatures().to(device), device)
    mu, sigma = gaussian_stats(features)
    arrays = dict(mu=mu, sigma=sigma, extractor=np.array(FEATURE_EXTRACTOR))
    if features_too:
        arrays["features"] = features
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return dict(images=len(dataset), path=str(out), keys=sorted(arrays))
