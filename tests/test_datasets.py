"""Datasets on a tiny generated ImageFolder tree, the offline photo split, bad files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from reddiff_bench.data import ImageFolder, PhotoCrops
from reddiff_bench.data.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS
from reddiff_bench.errors import ConfigError

from .conftest import SMALL_GMM
from .helpers import compose_config


@pytest.fixture()
def tree(tmp_path):
    rng = np.random.default_rng(0)
    for cls, size in (("n01440764", (40, 30)), ("n01443537", (24, 24)), ("n01484850", (30, 50))):
        (tmp_path / cls).mkdir()
        rows, cols = np.mgrid[: size[1], : size[0]]
        smooth = np.stack([rows * 5, cols * 8, (rows + cols) * 3], -1) % 256  # smooth: resamplers agree
        noise = rng.integers(0, 4, (size[1], size[0], 3))
        Image.fromarray((smooth + noise).clip(0, 255).astype(np.uint8)).save(tmp_path / cls / "a.png")
    return tmp_path


def test_image_folder_order_ids_and_adm_preprocessing(tree):
    ds = ImageFolder(str(tree), size=16)
    assert [ds.image_id(i) for i in range(len(ds))] == ["n01440764__a", "n01443537__a", "n01484850__a"]
    image_id, x = ds[2]
    assert x.shape == (3, 16, 16) and x.min() >= -1 and x.max() <= 1
    # ADM: resize the shorter side to 16 (bicubic, antialiased), then centre crop
    with Image.open(tree / "n01484850" / "a.png") as im:
        ref = im.convert("RGB").resize((16, int(50 * 16 / 30)), Image.BICUBIC)  # longer side truncated, as torchvision
    top = int(round((ref.size[1] - 16) / 2.0))  # torchvision's centre-crop offset
    ref = np.asarray(ref)[top : top + 16]
    expected = torch.from_numpy(ref.copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert (x - expected).abs().max() < 1e-6
    assert len(ImageFolder(str(tree), size=16, num_images=2)) == 2


def test_file_list_and_label_file(tree, tmp_path_factory):
    listing = tmp_path_factory.mktemp("lists") / "list.txt"
    listing.write_text("n01484850/a.png\nn01440764/a.png\n")
    ds = ImageFolder(str(tree), size=16, file_list=str(listing))
    assert [ds.image_id(i) for i in range(len(ds))] == ["n01484850__a", "n01440764__a"]
    labels = tmp_path_factory.mktemp("labels") / "labels.txt"
    labels.write_text("n01440764/a.png 0\nn01484850/a.png 2\n")
    ds = ImageFolder(str(tree), size=16, labels=str(labels))
    assert ds.labels == {"n01440764__a": 0, "n01484850__a": 2}
    with pytest.raises(ConfigError, match="1000 ImageNet class folders"):
        ImageFolder(str(tree), size=16, labels="synsets")


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ImageFolder(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="no images"):
        ImageFolder(str(tmp_path))


def test_photos_serve_held_out_crops_only():
    assert not set(TRAIN_PHOTOS) & set(HELDOUT_PHOTOS)
    ds = PhotoCrops(size=16, num_images=6)
    ids = [ds[i][0] for i in range(len(ds))]
    assert all(i.split("_r")[0] in HELDOUT_PHOTOS for i in ids)
    assert ids == [PhotoCrops(size=16, num_images=6)[i][0] for i in range(6)]  # seeded, stable


@pytest.mark.parametrize("skip", [False, True])
def test_a_corrupt_file_stops_clearly_or_becomes_a_row(tree, tmp_path, skip):
    from reddiff_bench.run.pipeline import run

    (tree / "n01443537" / "a.png").write_bytes(b"not an image")
    run_dir = tmp_path / "run"
    cfg = compose_config(SMALL_GMM + ["dataset=image_folder", f"dataset.root={tree}", "dataset.size=16",
                                      f"dataset.skip_unreadable={str(skip).lower()}", "solver=pinv", "logger=none",
                                      "progress=false", "batch_size=1"], run_dir=run_dir)
    if not skip:
        with pytest.raises(ConfigError, match="cannot read image .*n01443537"):
            run(cfg, run_dir)
        rows = pd.read_csv(run_dir / "metrics.csv")
        assert list(rows["status"]) == ["ok"]  # the finished row is kept
        return
    run(cfg, run_dir)
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert list(rows["status"]) == ["ok", "unreadable", "ok"]
