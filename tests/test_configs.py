"""Every option of every config group composes and instantiates (after lightning-hydra-template)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from reddiff_bench.errors import ConfigError

from .conftest import CONF, SMALL_GMM
from .helpers import compose_config

GROUPS = ["solver", "task", "dataset", "model", "weighting", "optimizer", "logger"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i, size in enumerate([(300, 260), (256, 256), (280, 400)]):
        (root / f"class{i}").mkdir()
        Image.new("RGB", size, (40 * i, 90, 200)).save(root / f"class{i}" / f"img{i}.png")
    return root


def test_every_group_has_options():
    for group in GROUPS + ["experiment"]:
        assert list((CONF / group).glob("*.yaml")), group


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(group, option, image_root, tmp_path):
    overrides = [f"{group}={option}"] + (SMALL_GMM if group != "model" or option == "gmm_photos" else [])
    if group == "dataset":
        overrides.append(f"paths.data_dir={image_root}")
        if "root" in compose_config(overrides).dataset.keys():
            overrides.append(f"dataset.root={image_root}")
    if group == "model":
        overrides.append(f"paths.checkpoint_dir={tmp_path}")
    if group == "task" and "path" in compose_config(overrides)[group].degradation.keys():
        mask = tmp_path / "mask.png"  # tasks that read user files get one
        Image.fromarray((torch.rand(16, 16) > 0.5).numpy().astype("uint8") * 255).save(mask)
        overrides.append(f"task.degradation.path={mask}")
    cfg = compose_config(overrides)
    node = cfg[group]
    assert "_target_" in node, f"{group}/{option} has no _target_"
    downloads = {"download", "local_files_only"} & set(node.keys()) if group == "model" else set()
    if downloads:
        # Real checkpoints are absent here: they must be refused with a clear message, not a traceback.
        overrides += ["model.download=false"] if "download" in downloads else ["model.local_files_only=true"]
        with pytest.raises(ConfigError):
            from reddiff_bench.runner import _instantiate

            _instantiate(compose_config(overrides)[group], group)
        return
    obj = instantiate(node, _convert_="all")
    if group == "optimizer":
        param = torch.zeros(3, requires_grad=True)
        assert isinstance(obj([param]), torch.optim.Optimizer)
    elif group == "weighting":
        w = obj(torch.tensor([0.99, 0.1]), torch.tensor([0.14, 0.995]))
        assert w.shape == (2,) and torch.all(w > 0)
    elif group == "dataset":
        image_id, x = obj[0]
        assert isinstance(image_id, str) and torch.isfinite(x).all()
        if x.ndim == 3:  # images; the Gaussian-mixture problems are vectors
            assert x.shape[0] == 3 and x.min() >= -1 and x.max() <= 1
    elif group == "solver":
        assert hasattr(obj, "solve")
    elif group == "task":
        assert obj.sigma_y >= 0


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment):
    cfg = compose_config([f"+experiment={experiment}"])
    assert cfg.experiment_name == experiment
