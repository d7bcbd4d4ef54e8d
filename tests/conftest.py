"""Shared fixtures. The test session uses its own cache dir (a small GMM fit lands there) and
offline W&B."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="reddiff_bench_tests_"))
atexit.register(shutil.rmtree, _SESSION_TMP, ignore_errors=True)
os.environ.setdefault("REDDIFF_BENCH_CACHE", str(_SESSION_TMP / "cache"))
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers share the 2 cores: one thread each, and so for the processes they start (idle
    # OpenMP threads spin, and oversubscribed spinning makes a solve tens of times slower)
    os.environ["OMP_NUM_THREADS"] = "1"

import torch  # noqa: E402

# one thread per xdist worker (make test runs two on the 2 cores), else up to two
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# A small, fast photo GMM: enough structure for solver tests, fitted in seconds.
SMALL_GMM = ["model.n_components=3", "model.n_crops=1200", "model.max_iter=10"]


@pytest.fixture(scope="session")
def photo_prior():
    from reddiff_bench.priors.gmm import photo_gmm_prior

    return photo_gmm_prior(n_components=3, n_crops=1200, max_iter=10, cache_dir=os.environ["REDDIFF_BENCH_CACHE"])


@pytest.fixture(scope="session")
def photo_batch():
    from reddiff_bench.data import PhotoCrops

    dataset = PhotoCrops(size=16, num_images=4)
    items = [dataset[i] for i in range(len(dataset))]
    return [i for i, _ in items], torch.stack([x for _, x in items])


MASK: dict[str, Path] = {}  # the test mask file for tasks that read user masks (conf/task/inpaint_file)


@pytest.fixture(scope="session", autouse=True)
def mask_png(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("masks") / "mask.png"
    array = (torch.rand(24, 24, generator=torch.Generator().manual_seed(0)) > 0.4).numpy().astype("uint8") * 255
    Image.fromarray(array).save(path)
    MASK["path"] = path
    MASK["packed"] = write_packed_masks(path.with_name("20ff.npz"), n=3, channels=3, side=24)
    return path


USER_FILE_TASKS = ("inpaint_file", "reddiff_inpaint_20ff")  # tasks that read the user's mask files
# tasks the 16 x 16 test images cannot run: the kernel network needs its weights and sides of 128 (tested apart)
NOT_AT_16 = ("deblur_nonlinear",)


def write_packed_masks(path: Path, n: int, channels: int, side: int, flat: bool = True, seed: int = 0) -> Path:
    """A mask file in RED-diff's format (utils/degredations.py save_mask: np.savez(f, m=np.packbits(mask),
    shape=mask.shape), True = observed), ``n`` masks of ``channels`` x ``side`` x ``side``, each channel its
    own pixels; ``flat``: stored as (n, C * H * W), as RED-diff's 20ff.npz, else (n, C, H, W)."""
    import numpy as np

    masks = torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(seed)).numpy() > 0.3
    masks = masks.reshape(n, -1) if flat else masks
    np.savez(path, m=np.packbits(masks, axis=None), shape=masks.shape)
    return path


def write_listed_images(root: Path, file_list: str, side: int = 8, layout: str = "as_listed") -> list[str]:
    """One small image for each line of a shipped (or given) image list under ``root``: at the
    listed relative path (``as_listed``), or FFHQ's thousands folders as JPEG (``thousands``:
    ``00000/00000.jpg``, found by stem). Returns the listed names."""
    from PIL import Image

    from reddiff_bench.data.datasets import bundled_list, read_list

    names = [name for name, _ in read_list(bundled_list(file_list))]
    for k, name in enumerate(names):
        if layout == "thousands":
            stem = Path(name).stem
            path = root / f"{int(stem) // 1000 * 1000:05d}" / f"{stem}.jpg"
        else:
            path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (side, side), (k % 256, (k // 256) * 40, 90)).save(path)
    return names
