"""A run's identity is declared once (reddiff_bench/run/identity.py): its hash and its directory
name agree on what changes a result, neither depends on where a class lives, and a directory of
the earlier scheme is migrated (and resumes) or refused with the keys that differ."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from omegaconf import OmegaConf

from reddiff_bench.errors import ConfigError
from reddiff_bench.run.identity import SCHEMA, class_name, config_hash, directory_name, identity, solver_text
from reddiff_bench.run.pipeline import run
from reddiff_bench.run.settings import resolved

from .conftest import SMALL_GMM
from .helpers import compose_config

BASE = SMALL_GMM + ["dataset.num_images=2", "progress=false", "logger=none", "metrics.fid=false", "solver.steps=5"]


def hash_and_dirname(overrides: list[str]) -> tuple[str, str]:
    cfg = compose_config(overrides)
    solver = solver_text(OmegaConf.to_container(cfg.solver, resolve=False))
    return config_hash(identity(resolved(cfg))), directory_name(list(cfg.hydra.overrides.task), solver)


# (solver, override, whether it can change the result)
CASES = [
    ("dps", "optimizer.lr=0.5", False),  # RED-Diff's optimizer: nothing to DPS
    ("dps", "weighting=log1p", False),
    ("reddiff", "optimizer.lr=0.5", True),
    ("reddiff", "weighting=log1p", True),
    ("dps", "+task.published.reddiff.lam=0.5", False),  # another solver's published setting
    ("reddiff", "+task.published.reddiff.lam=0.5", True),
    ("dps", "task.published.dps.zeta=0.9", True),
    ("dps", "+published.reddiff.lam=0.5", False),
    ("reddiff", "+published.reddiff.lam=0.5", True),
    ("dps", "profile.memory=false", False),
    ("dps", "batch_size=3", False),
    ("dps", "logger=wandb", False),
    ("dps", "device=cpu", False),
    ("dps", "dataset.num_images=3", False),  # more images extend a run
    ("dps", "solver.zeta=0.9", True),
    ("dps", "task=sr4", True),
    ("dps", "task.noise.sigma_y=0.1", True),
    ("dps", "seed=3", True),
    ("dps", "metrics.lpips=none", True),
    ("dps", "model.n_components=4", True),
]


@pytest.mark.parametrize("solver,override,changes", CASES, ids=[f"{s}:{o}" for s, o, _ in CASES])
def test_the_hash_and_the_directory_name_agree_on_what_changes_a_result(solver, override, changes):
    base_hash, base_dir = hash_and_dirname(BASE + [f"solver={solver}"])
    new_hash, new_dir = hash_and_dirname(BASE + [f"solver={solver}", override])
    assert (new_hash != base_hash) == changes, "hash"
    assert (new_dir != base_dir) == changes, f"directory {new_dir!r} against {base_dir!r}"


def test_the_identity_does_not_depend_on_module_paths():
    cfg = resolved(compose_config(BASE + ["solver=reddiff"]))
    moved = json.loads(json.dumps(cfg).replace("reddiff_bench.solvers.", "somewhere_else.solvers.algorithms."))
    assert moved != cfg and identity(moved) == identity(cfg)
    assert identity(cfg)["solver._target_"] == "REDDiff" and identity(cfg)["schema"] == SCHEMA
    assert class_name("torch.optim.Adam") == "Adam"


def schema_1_record(run_dir):
    """Rewrite a finished run's record and rows as the earlier scheme wrote them: module paths in
    the targets, every solver's published settings of the task, no schema, its own hash."""
    record = json.loads((run_dir / "run.json").read_text())
    cfg = OmegaConf.load(run_dir / "config.yaml")
    old = {key: value for key, value in record["result_relevant"].items() if key != "schema"}
    for key in [k for k in old if k.endswith("._target_")]:
        old[key] = OmegaConf.select(cfg, key)  # the full module path of that time
    old["task.published.dps.zeta"] = 0.5
    old_hash = "0123456789ab"
    (run_dir / "run.json").write_text(json.dumps({"config_hash": old_hash, "result_relevant": old}))
    rows = pd.read_csv(run_dir / "metrics.csv")
    rows["config_hash"] = old_hash
    rows.to_csv(run_dir / "metrics.csv", index=False)
    return rows


def test_a_directory_of_the_earlier_scheme_is_migrated_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    run(compose_config(BASE + ["solver=ddim"], run_dir=run_dir), run_dir)
    before = schema_1_record(run_dir)
    (run_dir / "outputs").rename(tmp_path / "outputs_moved")  # a re-solve would make the folder again
    run(compose_config(BASE + ["solver=ddim"], run_dir=run_dir), run_dir)
    after = pd.read_csv(run_dir / "metrics.csv")
    assert after["psnr"].tolist() == pytest.approx(before["psnr"].tolist()) and len(after) == 2
    assert not (run_dir / "outputs").exists()  # nothing solved again
    record = json.loads((run_dir / "run.json").read_text())
    assert record["result_relevant"]["schema"] == SCHEMA and record["migrated"]["from_hash"] == "0123456789ab"
    assert set(after["config_hash"]) == {record["config_hash"]}


def test_a_directory_of_the_earlier_scheme_with_other_settings_is_refused_naming_them(tmp_path):
    run_dir = tmp_path / "run"
    run(compose_config(BASE + ["solver=ddim"], run_dir=run_dir), run_dir)
    schema_1_record(run_dir)
    with pytest.raises(ConfigError, match="seed: 0 in the directory, 5 now"):
        run(compose_config(BASE + ["solver=ddim", "seed=5"], run_dir=run_dir), run_dir)


def test_a_long_directory_name_still_shows_its_solver_and_task_and_stays_unique():
    """Regression (issue 22): the 4-solver preset with several overrides gave folders cut to
    '...model=adm_ra...8fe8f2b5bfbd', with the solver out of sight."""
    long = ["model=adm_random", "model.checkpoint_name=adm_ffhq256", "model.image_size=64", "dataset.size=64",
            "dataset.scale=1.0", "metrics.lpips=none", "task.noise.sigma_y=0.0"]
    names = {solver: directory_name([*long, f"solver={solver}", "task=sr4"], "") for solver in ("dps", "pgdm")}
    for solver, name in names.items():
        assert name.startswith(f"solver={solver},task=sr4,") and len(name) <= 120
    assert len(set(names.values())) == 2
    short = directory_name(["task=sr4", "solver=dps"], "")
    assert short == "solver=dps,task=sr4"  # short names keep Hydra's sorted order (existing folders resume)
