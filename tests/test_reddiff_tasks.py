"""RED-diff's task set (conf/task/reddiff_*.yaml) against RED-diff's code (NVlabs/RED-diff 66482f2)."""

import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from reddiff_bench.errors import ConfigError
from reddiff_bench.operators import MaskFile

from .conftest import write_packed_masks
from .helpers import compose_config


def reddiff_masks(path) -> np.ndarray:
    """RED-diff's reading of its mask file (utils/degredations.py load_mask), written out here."""
    d = np.load(path)
    return np.unpackbits(d["m"], count=int(np.prod(d["shape"]))).reshape(d["shape"]).view(bool)


@pytest.mark.parametrize("flat", [True, False], ids=["n_CHW", "n_C_H_W"])
def test_a_reddiff_mask_file_drives_inpainting_as_reddiff_indexes_it(tmp_path, flat):
    """Regression (issue 27): MaskFile read only the key 'mask' (KeyError on 'm'/'shape') and picked at
    random. Image i of the dataset takes mask i modulo their number, each channel its own pixels."""
    path = write_packed_masks(tmp_path / "20ff.npz", n=3, channels=3, side=16, flat=flat)
    expected = reddiff_masks(path).reshape(3, 3, 16, 16).astype("float32")
    cfg = compose_config(["task=reddiff_inpaint_20ff", f"task.degradation.path={path}"])
    task = instantiate(cfg.task, _convert_="all")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    for index in range(7):
        artifacts = task.sample_artifacts((3, 16, 16), torch.Generator().manual_seed(index), index=index)
        np.testing.assert_array_equal(artifacts["mask"].numpy(), expected[index % 3])
        op = task.operator([artifacts], (3, 16, 16))
        # Inpainting2.H: the flattened image times the flattened mask
        flat = x[0].reshape(-1).numpy() * expected[index % 3].reshape(-1)
        np.testing.assert_array_equal(op(x)[0].reshape(-1).numpy(), flat)
        y = task.measure(op, x, [torch.Generator().manual_seed(0)])
        assert bool((y[0][expected[index % 3] == 0] != 0).all())  # noise on the missing entries too (main.py)


def test_a_reddiff_mask_file_is_upsampled_as_reddiff_repeats_it(tmp_path):
    path = write_packed_masks(tmp_path / "20ff.npz", n=2, channels=3, side=8)
    mask = MaskFile(str(path), pick="index").sample_artifacts((3, 16, 16), torch.Generator(), index=1)["mask"]
    expected = reddiff_masks(path).reshape(2, 3, 8, 8)[1].repeat(2, axis=1).repeat(2, axis=2)  # in2: np.repeat
    np.testing.assert_array_equal(mask.numpy(), expected.astype("float32"))


def test_broken_mask_files_are_refused_by_name(tmp_path):
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, m=np.zeros(10, dtype=np.uint8), shape=np.array([3, 3 * 16 * 16]))
    with pytest.raises(ConfigError, match="truncated"):
        MaskFile(str(truncated))
    other = tmp_path / "other.npz"
    np.savez(other, masks=np.ones((4, 4)))
    with pytest.raises(ConfigError, match=r"other.npz holds \['masks'\].*'m' and 'shape'"):
        MaskFile(str(other))
    from reddiff_bench.run.pipeline import instantiate_group

    with pytest.raises(ConfigError, match="masks/20ff.npz does not exist"):
        instantiate_group(compose_config(["task=reddiff_inpaint_20ff", f"paths.data_dir={tmp_path}"]).task, "task")


def test_the_run_gives_each_image_its_dataset_index(tmp_path):
    """Through the pipeline: the saved artifacts of image k are mask k (modulo the number of masks)."""
    from reddiff_bench.run.pipeline import run

    from .test_pipeline import FAST

    path = write_packed_masks(tmp_path / "20ff.npz", n=2, channels=3, side=16)
    run_dir = tmp_path / "run"
    cfg = compose_config(FAST + ["logger=none", "solver=pinv", "task=reddiff_inpaint_20ff",
                                 f"task.degradation.path={path}", "metrics.fid=false"], run_dir=run_dir)
    run(cfg, run_dir)
    expected = reddiff_masks(path).reshape(2, 3, 16, 16).astype("float32")
    ids = json.loads((run_dir / "dataset_ids.json").read_text())
    for index, image_id in enumerate(ids):
        saved = torch.load(run_dir / "measurements" / f"{image_id}.pt", weights_only=False)
        np.testing.assert_array_equal(saved["artifact_mask"].numpy(), expected[index % 2])
