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

from .conftest import SMALL_GMM, write_listed_images
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


# --- real folders (issue 22): ids that look like numbers, extensions in any case, 16-bit, alpha, tiny --------

def run_folder(root, run_dir, *extra):
    from reddiff_bench.run.pipeline import run

    cfg = compose_config(SMALL_GMM + ["dataset=image_folder", f"dataset.root={root}", "dataset.size=16",
                                      "solver=pinv", "logger=none", "progress=false", "metrics.fid=false", *extra],
                         run_dir=run_dir)
    return run(cfg, run_dir)


def test_ids_that_look_like_numbers_stay_text_and_a_rerun_solves_nothing(tmp_path, caplog):
    """Regression: an FFHQ-like folder (00000.png, 00001.png) ran twice gave ids 0, 1, 0, 1 (pandas
    read 00000 as the number 0), solved everything again and counted rows 'outside the dataset'."""
    from reddiff_bench.study.report import rows_below, summary

    root = tmp_path / "ffhq"
    root.mkdir()
    for k in range(2):
        Image.new("RGB", (20, 20), (30 * k, 90, 200)).save(root / f"{k:05d}.png")
    run_folder(root, tmp_path / "run")
    caplog.set_level("INFO")
    outcome = run_folder(root, tmp_path / "run")
    assert "2 of 2 images already have rows" in caplog.text
    rows = pd.read_csv(tmp_path / "run" / "metrics.csv", dtype=str)
    assert list(rows["image_id"]) == ["00000", "00001"]
    assert outcome.summary["num_images"] == 2 and list(outcome.rows["image_id"]) == ["00000", "00001"]
    table = summary(rows_below(tmp_path))
    assert int(table.count.iloc[0]) == 2


def test_extensions_match_in_any_case(tmp_path):
    """Regression: a.png, b.JPG, c.Png gave only a; an all-uppercase folder gave 'no images'."""
    for name in ("a.png", "b.JPG", "c.Png", "D.JPEG"):
        Image.new("RGB", (20, 20), (10, 90, 200)).save(tmp_path / name, format="PNG" if "p" in name.lower() else "JPEG")
    assert [ImageFolder(str(tmp_path), size=16).image_id(i) for i in range(4)] == ["D", "a", "b", "c"]


def test_sixteen_bit_grayscale_keeps_its_values(tmp_path):
    """Regression: a 16-bit grayscale PNG (PIL mode I;16) came out almost all white."""
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    with Image.open(tmp_path / "ramp.png") as im:
        assert im.mode == "I;16"
    _, x = ImageFolder(str(tmp_path), size=32)[0]
    expected = torch.from_numpy(ramp.astype(np.float64) / 65535 * 2 - 1).float()
    assert torch.allclose(x[0], expected, atol=1e-3) and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_alpha_and_tiny_images_are_used_with_a_warning_naming_the_file(tmp_path, caplog):
    """Regression: RGBA images lost their alpha and a 7x5 image was upscaled to 256, silently."""
    Image.new("RGBA", (20, 20), (10, 90, 200, 128)).save(tmp_path / "alpha.png")
    Image.new("RGB", (7, 5), (10, 90, 200)).save(tmp_path / "tiny.png")
    dataset = ImageFolder(str(tmp_path), size=16)
    with caplog.at_level("WARNING"):
        dataset[0], dataset[1]
    assert "alpha.png has an alpha channel" in caplog.text
    assert "tiny.png is 7x5, smaller than the 16-pixel side" in caplog.text


def test_a_garbage_table_in_a_run_directory_is_refused_naming_it_and_kept(tmp_path):
    """Regression: a garbage metrics.csv gave a pandas ParserError that named no file."""
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (20, 20), (30, 90, 200)).save(root / "a.png")
    run_folder(root, tmp_path / "run")
    garbage = '"unterminated\n\x00\x01,,,\n'
    (tmp_path / "run" / "metrics.csv").write_text(garbage)
    with pytest.raises(ConfigError, match=r"metrics\.csv is not a table of rows.*move it away"):
        run_folder(root, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.csv").read_text() == garbage


def test_the_report_and_the_summary_agree_when_the_dataset_changes(tmp_path, capsys):
    """Regression (issue 22): photos with num_images=2, then 4 in the same folder (the crops depend
    on N): the summary counted 4 images, the report 6. Both now count the dataset's 4 and name the
    rows left out."""
    from reddiff_bench.cli.report import main
    from reddiff_bench.run.pipeline import run
    from reddiff_bench.study.report import rows_below, summary

    run_dir = tmp_path / "run"
    base = SMALL_GMM + ["solver=pinv", "logger=none", "progress=false", "metrics.fid=false"]
    run(compose_config(base + ["dataset.num_images=2"], run_dir=run_dir), run_dir)
    first = set(pd.read_csv(run_dir / "metrics.csv", dtype=str)["image_id"])
    outcome = run(compose_config(base + ["dataset.num_images=4"], run_dir=run_dir), run_dir)
    on_disk = pd.read_csv(run_dir / "metrics.csv", dtype=str)
    gone = sorted(set(on_disk["image_id"]) - set(outcome.rows["image_id"]))
    assert len(on_disk) == 4 + len(gone) and gone and set(gone) <= first  # old crops stay on disk
    assert outcome.summary["num_images"] == 4 and outcome.summary["rows_outside_dataset"] == gone
    assert all(i in outcome.summary["notes"]["rows_outside_dataset"] for i in gone)
    frame = rows_below(tmp_path)
    assert int(summary(frame).count.iloc[0]) == 4 and frame.attrs["outside_dataset"] == {str(run_dir): gone}
    assert main([str(tmp_path)]) == 0
    assert f"{len(gone)} row(s) of images its dataset no longer holds are left out" in capsys.readouterr().err


def test_replaying_measurements_made_on_other_images_is_refused_naming_them(tmp_path):
    """Regression (issue 22): measurements_from=<run A>/measurements on a folder with the same file
    names and other pixels ran silently on A's y (PSNR 16.7 instead of 23.8)."""
    for folder, colour in (("a", (30, 90, 200)), ("b", (200, 40, 10))):
        (tmp_path / folder).mkdir()
        for name in ("x", "y"):
            Image.new("RGB", (20, 20), colour).save(tmp_path / folder / f"{name}.png")
    run_folder(tmp_path / "a", tmp_path / "run_a")
    (tmp_path / "b" / "y.png").unlink()
    Image.new("RGB", (20, 20), (30, 90, 200)).save(tmp_path / "b" / "y.png")  # y: the same pixels as in a
    replay = f"measurements_from={tmp_path}/run_a/measurements"
    with pytest.raises(ConfigError, match=r"made on other images than this run's, under the same ids: x \("):
        run_folder(tmp_path / "b", tmp_path / "run_b", replay)
    (tmp_path / "b" / "x.png").unlink()
    run_folder(tmp_path / "b", tmp_path / "run_b2", replay)  # y alone: the same image, replayed


@pytest.mark.slow  # 1000 images through the pipeline: about 15 s
def test_imagenet_presets_run_exactly_the_dgp_top1k_images_one_per_class_with_their_labels(tmp_path):
    """Regression (issue 23): imagenet_val had file_list=null and ran the first 1000 files in sorted
    order (about 20 classes). A fake ImageNet tree with the list's 1000 images and others beside
    them: the preset runs exactly the listed ones, in the list's order, with the list's labels."""
    from reddiff_bench.data.datasets import bundled_list, read_list
    from reddiff_bench.run.pipeline import run

    root = tmp_path / "imagenet" / "val"
    names = write_listed_images(root, "imagenet_dgp_top1k")
    for synset in sorted({n.split("/")[0] for n in names})[:50]:  # other images of the same classes, sorted first
        Image.new("RGB", (8, 8), (1, 2, 3)).save(root / synset / "ILSVRC2012_val_00000000.JPEG")
    run_dir = tmp_path / "run"
    cfg = compose_config(SMALL_GMM + ["+experiment=imagenet_inpaint", f"paths.data_dir={tmp_path}", "model=gmm_photos",
                                      "dataset.size=16", "solver=pinv", "task=inpaint_box", "logger=none",
                                      "progress=false", "metrics.fid=false", "metrics.lpips=none", "metrics.top1=false",
                                      "save_outputs=false", "save_measurements=false", "batch_size=250",
                                      "profile.memory=false", "grid_images=0", "reference_metrics=false"],
                         run_dir=run_dir)
    assert cfg.dataset.file_list == "imagenet_dgp_top1k" and cfg.dataset.labels == "list"
    outcome = run(cfg, run_dir)
    expected = [n.rsplit(".", 1)[0].replace("/", "__") for n in names]
    assert list(outcome.rows["image_id"]) == expected and (outcome.rows["status"] == "ok").all()
    assert len({i.split("__")[0] for i in expected}) == 1000  # one per class
    listed = read_list(bundled_list("imagenet_dgp_top1k"))
    dataset = ImageFolder(str(root), size=16, file_list="imagenet_dgp_top1k", labels="list")
    assert dataset.labels == {i: label for i, (_, label) in zip(expected, listed)}
    assert sorted(dataset.labels.values()) == list(range(1000))


def test_ffhq_lists_find_their_images_by_stem_in_any_layout_and_are_disjoint(tmp_path):
    root = tmp_path / "ffhq"
    write_listed_images(root, "ffhq_dps_val1k", layout="thousands")  # 00000/00000.jpg, as FFHQ's own folders
    Image.new("RGB", (8, 8)).save(root / "00000" / "01000.jpg")  # not listed
    dataset = ImageFolder(str(root), size=8, file_list="ffhq_dps_val1k")
    assert len(dataset) == 1000 and dataset.image_id(0) == "00000__00000" and dataset.image_id(999) == "00000__00999"
    with pytest.raises(ConfigError, match=r"1000 of the 1000 listed images are not under .*first: 63000\.png"):
        ImageFolder(str(root), size=8, file_list="ffhq_reddiff_val1k")


def test_a_list_with_missing_or_ambiguous_images_is_refused_naming_them(tmp_path):
    for name in ("a/x.png", "b/x.png", "c/y.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\nc/y.png 3\nx.png 1\nz.png 2\n")
    with pytest.raises(ConfigError, match=r"1 of the 3 listed images are not under .*z\.png.*"
                                          r"1 listed names match several files by stem \(first: x\.png\)"):
        ImageFolder(str(tmp_path), size=8, file_list=str(listing))
    listing.write_text("c/y.png 3\nb/x.png\n")
    with pytest.raises(ConfigError, match="labels=list needs a file list whose every line"):
        ImageFolder(str(tmp_path), size=8, file_list=str(listing), labels="list")
    with pytest.raises(ConfigError, match=r"neither a file nor a list shipped with the package \(ffhq_dps_val1k"):
        ImageFolder(str(tmp_path), size=8, file_list="imagenet_top1k")
    listing.write_text("c/y.png three\n")
    with pytest.raises(ConfigError, match="line 1: 'c/y.png three' is not"):
        ImageFolder(str(tmp_path), size=8, file_list=str(listing))


# --- splits: validation never holds a test image ---------------------------------------------------

def test_photo_validation_crops_share_no_pixel_with_the_test_split_and_test_crops_are_unchanged():
    test = PhotoCrops(num_images=24)
    assert [test.image_id(i) for i in range(3)] == [PhotoCrops(num_images=24, split="test").image_id(i)
                                                    for i in range(3)]
    validation = PhotoCrops(num_images=40, split="validation", test_images=24)
    assert validation.split == "validation" and len(validation) == 40
    size = test.size
    for name, r, c in validation.items:
        for other, tr, tc in test.items:
            overlap = name == other and abs(r - tr) < size and abs(c - tc) < size
            assert not overlap, f"validation crop {name} ({r}, {c}) overlaps test crop ({tr}, {tc})"
    assert not {validation.image_id(i) for i in range(40)} & {test.image_id(i) for i in range(24)}


def test_gmm_validation_problems_are_other_draws():
    from reddiff_bench.data.gmm_problems import GMMProblems

    test, validation = GMMProblems(num_problems=5), GMMProblems(num_problems=5, split="validation")
    assert not set(test.ids) & set(validation.ids)
    assert not torch.equal(test[0][1], validation[0][1])
    with pytest.raises(ConfigError, match="dataset.split must be one of test, validation"):
        GMMProblems(split="train")


def test_image_folder_validation_takes_no_listed_image_whatever_the_test_size(tmp_path):
    listed = write_listed_images(tmp_path, "ffhq_dps_val1k", side=4)
    extra = tmp_path / "extra"
    extra.mkdir()
    for k in range(30):
        Image.fromarray(np.full((4, 4, 3), k, np.uint8)).save(extra / f"{70000 + k}.png")
    test = ImageFolder(str(tmp_path), size=4, num_images=10, file_list="ffhq_dps_val1k")
    validation = ImageFolder(str(tmp_path), size=4, num_images=12, file_list="ffhq_dps_val1k", split="validation")
    ids = {validation.image_id(i) for i in range(len(validation))}
    assert len(ids) == 12 and all(i.startswith("extra__") for i in ids)  # none of the 1000 listed, not only of 10
    assert not ids & {test.image_id(i) for i in range(len(test))}
    assert [f.name for f in validation.files] == [f.name for f in ImageFolder(
        str(tmp_path), size=4, num_images=12, file_list="ffhq_dps_val1k", split="validation").files]
    assert len(listed) == 1000
    unlisted = ImageFolder(str(extra), size=4, split="validation", test_images=20)
    assert {f.name for f in unlisted.files} == {f"{70000 + k}.png" for k in range(20, 30)}
    with pytest.raises(ConfigError, match="needs dataset.test_images"):
        ImageFolder(str(extra), size=4, split="validation")


def test_the_test_split_keeps_the_runs_identity_and_validation_changes_it():
    from reddiff_bench.run.identity import config_hash, identity
    from reddiff_bench.run.settings import resolved

    base = resolved(compose_config(["dataset=photos"]))
    without = {**base, "dataset": {k: v for k, v in base["dataset"].items() if k not in ("split", "test_images")}}
    assert config_hash(identity(base)) == config_hash(identity(without))
    validation = resolved(compose_config(["dataset=photos", "dataset.split=validation"]))
    assert config_hash(identity(validation)) != config_hash(identity(base))
