"""The metrics of a run beyond PSNR/SSIM, each optional and each able to say why it is missing.

* per image: ``lpips`` (images of at least 32 x 32 pixels), ``top1_correct`` (where the dataset
  has labels); with several samples, ``lpips_diversity`` (mean pairwise LPIPS of the samples);
* per run: ``fid``, ``kid``, ``kid_std`` over the run's estimates against a reference set, with
  ``fid_num_images``, ``fid_features``, ``fid_reference`` and ``kid_reference`` (which set) beside
  them. The reference is the run's clean images by default, or a statistics/features file or a
  folder of images (``fid_reference``, ``kid_reference``; see ``fid.Reference``). Computed at the
  end over every image of the run from what is on disk (the saved estimates, the clean images'
  features cached per dataset), so a resumed or sharded run reports what an uninterrupted one does.

A metric whose network weights are absent records NaN, and the reason lands in the run's
summary (``notes``) and the log, once.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..files import lock, read_or_explain, temporary_sibling
from .classifier import ResNet50Top1
from .fid import (
    FEATURE_EXTRACTOR,
    GROUND_TRUTH,
    InceptionFeatures,
    Reference,
    frechet_distance,
    gaussian_stats,
    kernel_inception_distance,
    read_reference,
)
from .perceptual import LPIPS
from .weights import MetricUnavailable, log_missing

log = logging.getLogger(__name__)

LPIPS_MIN_SIDE = 32  # AlexNet/VGG pooling leaves nothing of smaller images


class MetricSuite:
    def __init__(self, lpips: str | None = "alex", fid: bool = True, top1: bool = True, kid_subsets: int = 100,
                 kid_subset_size: int = 1000, device: str | torch.device = "cpu", cache_dir: str | None = None,
                 labels: dict[str, int] | None = None, random_backbones: bool = False, dataset_key: str = "",
                 fid_reference: str = GROUND_TRUTH, kid_reference: str = GROUND_TRUTH, reference_fallback: bool = False,
                 folder_reference: Callable[[Path, Any], Reference] | None = None):
        self.references = {"fid": str(fid_reference or GROUND_TRUTH), "kid": str(kid_reference or GROUND_TRUTH)}
        self.reference_fallback = bool(reference_fallback)  # a missing reference file: the ground truth, with a note
        self.folder_reference = folder_reference  # features of a folder of images (the run layer reads images)
        self.lpips_net = None if lpips in (None, "none", False) else str(lpips)
        self.want_fid, self.want_top1 = bool(fid), bool(top1)
        self.kid_subsets, self.kid_subset_size = int(kid_subsets), int(kid_subset_size)
        self.device = torch.device(device)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.labels = labels or {}
        self.random_backbones = random_backbones  # tests only: no pretrained weights
        self.notes: dict[str, str] = {}
        self._nets: dict[str, Any] = {}
        self._real: list[np.ndarray] = []
        self._ids: list[str] = []
        self._real_cache = None
        if self.cache_dir is not None and dataset_key:
            key = hashlib.sha256(dataset_key.encode()).hexdigest()[:16]
            self._real_cache = self.cache_dir / "fid_reference" / f"{key}.npz"
        self._cached_real = self._load_real()

    def _load_real(self) -> dict[str, np.ndarray] | None:
        if self._real_cache is None or not self._real_cache.is_file():
            return None
        return read_or_explain(self._real_cache, _read_features, "cached FID reference features")

    def _net(self, name: str, build):
        if name in self.notes:
            return None
        if name not in self._nets:
            try:
                self._nets[name] = build().to(self.device)
            except MetricUnavailable as err:
                self._unavailable(name, str(err), log_missing(err.__cause__) if err.__cause__ is not None else "")
                return None
        return self._nets[name]

    def _unavailable(self, name: str, reason: str, detail: str = "") -> None:
        """``reason`` becomes the note (it reaches committed tables: no machine's paths); ``detail``
        goes to the log only."""
        if name not in self.notes:
            self.notes[name] = reason
            log.warning("%s%s", reason, detail)

    @staticmethod
    def _is_rgb_image(x: Tensor) -> bool:
        return x.ndim == 4 and x.shape[1] == 3

    def image_metrics(self, image_id: str, estimate: Tensor, x: Tensor) -> dict[str, float]:
        """Metrics of one image's estimate (1, C, H, W) against its ground truth (1, C, H, W)."""
        if not self._is_rgb_image(x):
            return {}
        out: dict[str, float] = {}
        if self.lpips_net is not None:
            out["lpips"] = math.nan
            if min(x.shape[-2:]) < LPIPS_MIN_SIDE:
                self._unavailable("lpips", f"LPIPS needs images of at least {LPIPS_MIN_SIDE}x{LPIPS_MIN_SIDE} pixels")
            else:

                net = self._net("lpips", lambda: LPIPS(self.lpips_net, self.random_backbones))
                if net is not None:
                    out["lpips"] = float(net(estimate.to(self.device), x.to(self.device))[0])
        if self.want_top1 and image_id in self.labels:

            out["top1_correct"] = math.nan
            net = self._net("top1", lambda: ResNet50Top1(self.random_backbones))
            if net is not None:
                out["top1_correct"] = float(int(net.predict(estimate.to(self.device))[0]) == self.labels[image_id])
        return out

    def diversity(self, samples: Tensor) -> dict[str, float]:
        """Mean pairwise LPIPS of one measurement's samples (n, C, H, W)."""
        if self.lpips_net is None or not self._is_rgb_image(samples) or min(samples.shape[-2:]) < LPIPS_MIN_SIDE:
            return {}

        net = self._net("lpips", lambda: LPIPS(self.lpips_net, self.random_backbones))
        return {"lpips_diversity": net.pairwise_mean(samples.to(self.device)) if net is not None else math.nan}

    def finalize(self, images: Iterable[tuple[str, Callable[[], Tensor], Callable[[], Tensor]]] = ()) -> dict[str, Any]:
        """Run-level metrics (FID, KID) over ``images``: ``(image_id, load_estimate, load_clean)``
        with loaders of (1, C, H, W) tensors in [-1, 1] (the clean one is read only when its
        features are not cached); and the notes on unavailable metrics."""
        out: dict[str, Any] = {}
        if self.want_fid:
            fake, real, ids = [], [], []
            images = list(images)
            net = self._net("fid", InceptionFeatures) if images else None
            references = self._references(net) if net is not None else {}
            need_clean = any(r is None for r in references.values())
            for image_id, load_estimate, load_clean in images:
                if net is None:
                    break
                estimate = load_estimate()
                if not self._is_rgb_image(estimate):
                    break
                fake.append(net(estimate.to(self.device)).cpu().double().numpy())
                if not need_clean:
                    continue
                if self._cached_real is not None and image_id in self._cached_real:
                    real.append(self._cached_real[image_id][None])
                else:
                    real.append(net(load_clean().to(self.device)).cpu().double().numpy())
                ids.append(image_id)
            if fake:
                if real:
                    self._ids, self._real = ids, real
                    self._save_real()
                fake_all = np.concatenate(fake)
                n = len(fake_all)
                clean = Reference(f"ground truth ({n} images)", features=np.concatenate(real)) if real else None
                used = {which: ref or clean for which, ref in references.items()}
                for which, ref in used.items():
                    if ref.dim != fake_all.shape[1]:
                        raise ConfigError(f"metrics.{which}_reference: {ref.description} has {ref.dim} features per "
                                          f"image; {FEATURE_EXTRACTOR} gives {fake_all.shape[1]}")
                out.update(fid_num_images=n, fid_features=FEATURE_EXTRACTOR,
                           fid_reference=used["fid"].description, kid_reference=used["kid"].description)
                if n < 2:
                    self._unavailable("fid", "FID/KID need at least 2 images")
                    out.update(fid=math.nan, kid=math.nan, kid_std=math.nan)
                else:
                    out["fid"] = frechet_distance(*gaussian_stats(fake_all), *used["fid"].stats())
                    out["kid"], out["kid_std"] = math.nan, math.nan
                    if used["kid"].features is None:
                        self._unavailable("kid", f"KID needs reference features; {used['kid'].description} holds "
                                                 f"only their mean and covariance (metrics.kid_reference)")
                    else:
                        out["kid"], out["kid_std"] = kernel_inception_distance(
                            fake_all, used["kid"].features, self.kid_subsets, self.kid_subset_size)
                    if n < 2048:
                        out["fid_warning"] = (f"FID over {n} images (< 2048 feature dimensions) is strongly biased "
                                              f"upwards; compare it only between runs with the same images")
        if self.notes:
            out["notes"] = dict(self.notes)
        return out

    def _references(self, net) -> dict[str, Reference | None]:
        """The FID and KID reference sets (None: the run's clean images), each read once."""
        read: dict[str, Reference | None] = {}
        for which, spec in self.references.items():
            if spec not in read:
                read[spec] = self._reference(which, spec, net)
        return {which: read[spec] for which, spec in self.references.items()}

    def _reference(self, which: str, spec: str, net) -> Reference | None:
        if spec == GROUND_TRUTH:
            return None
        path = Path(spec).expanduser()
        if not path.exists():
            if not self.reference_fallback:
                raise ConfigError(f"metrics.{which}_reference: {path} does not exist. Make it with python -m "
                                  f"reddiff_bench fid-stats IMAGE_DIR --out FILE, or set metrics.{which}_reference="
                                  f"{GROUND_TRUTH}.")
            name = which.upper()
            self._unavailable(f"{which}_reference", f"the {name} reference this preset names ({path.name}) is absent: "
                                                    f"{name} is against the run's ground truth instead")
            return None
        if path.is_dir():
            if self.folder_reference is None:
                raise ConfigError(f"metrics.{which}_reference: a folder of images ({path}) needs a run to read it")
            return self.folder_reference(path, net)
        return read_reference(path, dim=None)  # checked against the estimates' features in finalize

    def _save_real(self) -> None:
        """Cache the clean images' features (per dataset config), shared by the runs of a sweep:
        merged under a lock with what other jobs saved meanwhile, replaced atomically."""
        if self._real_cache is None:
            return
        mine = {i: f[0] for i, f in zip(self._ids, self._real)}
        with lock(self._real_cache):
            current = self._load_real() or {}
            if set(mine) <= set(current):
                return
            tmp = temporary_sibling(self._real_cache)
            try:
                with open(tmp, "wb") as f:
                    np.savez(f, **{**current, **mine})
                tmp.replace(self._real_cache)
            finally:
                if tmp.exists():
                    tmp.unlink()


def _read_features(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {str(k): data[k] for k in data.files}
