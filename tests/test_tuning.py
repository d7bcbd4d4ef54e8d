"""The tuner (reddiff_bench/study/tuning.py, python -m reddiff_bench tune): search spaces, a
closed-form optimum, the validation split, tuned settings as config, kill -9 and resume, two
workers sharing one study."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from reddiff_bench.data import PhotoCrops
from reddiff_bench.errors import ConfigError
from reddiff_bench.run.settings import CONF_DIR
from reddiff_bench.run.store import read_rows
from reddiff_bench.study import tuning

from .helpers import compose_config

SOLVERS = sorted(p.stem for p in (CONF_DIR / "solver").glob("*.yaml"))
GAUSSIAN = ["model=gaussian", "dataset=gmm_problems", "task=random_matrix", "task.degradation.d_y=4",
            "task.noise.sigma_y=0.1", "logger=none", "progress=false"]  # N(0, 2^2 I) in d = 8


def tune_overrides(tmp_path: Path) -> list[str]:
    return [f"tune.dir={tmp_path / 'tuning'}", f"tune.conf_dir={tmp_path / 'conf' / 'tuned'}",
            f"paths.output_dir={tmp_path / 'outputs'}"]


@pytest.mark.parametrize("solver", SOLVERS)
def test_every_solver_has_a_search_space_whose_paths_are_its_numeric_settings(solver):
    space = tuning.search_space(solver, with_cost=True)
    assert space.params, f"conf/search/{solver}.yaml tunes nothing"
    cfg = compose_config([f"solver={solver}"])
    for param in space.params:
        value = OmegaConf.select(cfg, param.path)
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (param.path, value)
        assert param.path.startswith(("solver.", "optimizer.")), param.path
    quality = tuning.search_space(solver)
    assert all(p.path != "solver.steps" for p in quality.params), "step counts are cost settings, not quality ones"


def test_objectives_resolve_posterior_by_the_estimate_and_refuse_what_has_no_direction():
    assert tuning.objectives("posterior", "point") == ["mse_to_post_mean"]
    assert tuning.objectives("posterior", "sample") == ["sw_to_posterior"]
    assert tuning.objectives(["psnr", "nfe"], "sample") == ["psnr", "nfe"]
    assert tuning.directions(["psnr", "nfe"]) == ["maximize", "minimize"]
    for bad in ("fid", "data_consistency", "nonsense"):
        with pytest.raises(ConfigError, match="tune.objective"):
            tuning.objectives(bad, "point")


def test_a_trial_is_the_experiments_run_on_the_validation_split_with_one_wandb_group_per_study(tmp_path):
    cfg = compose_config(["+experiment=demo", "model=gmm_photos", "task=sr4", "solver=reddiff", "logger=wandb",
                          "dataset.num_images=16", "tune.images=3", *tune_overrides(tmp_path)])
    study = tuning.study_of(cfg)
    assert study.key == "gmm_photos/sr4/reddiff" and study.folder == tmp_path / "tuning" / "psnr" / study.key
    assert tuning.defaults(cfg, study) == {"lam": 0.25, "lr": 0.1}  # trial 0: its own settings
    trial = tuning.trial_config(cfg, study, {"lam": 0.5, "lr": 0.02})
    assert (trial.solver.lam, trial.solver.optimizer.lr) == (0.5, 0.02)
    assert (trial.dataset.split, trial.dataset.num_images, trial.dataset.test_images) == ("validation", 3, 16)
    assert trial.logger.group == "tune-demo-gmm_photos-sr4-reddiff" and trial.study.sweep == study.key
    assert not trial.metrics.fid and not trial.reference_metrics and trial.n_samples == 1
    assert cfg.dataset.split == "test" and cfg.solver.lam == 0.25  # the experiment's config is untouched
    dps = compose_config(["+experiment=demo", "model=gmm_photos", "solver=dps", "tune.objective=posterior",
                          *tune_overrides(tmp_path)])
    posterior = tuning.study_of(dps)
    assert posterior.metrics == ["sw_to_posterior"] and posterior.folder.parts[-4] == "posterior"
    trial = tuning.trial_config(dps, posterior, {"zeta": 0.3})
    assert trial.solver.zeta == 0.3 and trial.reference_metrics and trial.n_samples == 16


def test_a_study_folder_serves_one_configuration(tmp_path):
    cfg = compose_config([*GAUSSIAN, "solver=pinv", "tune.trials=1", "tune.images=1", *tune_overrides(tmp_path)])
    tuning.work(cfg)
    other = compose_config([*GAUSSIAN, "solver=pinv", "tune.trials=1", "tune.images=1", "model.std=3.0",
                            *tune_overrides(tmp_path)])
    with pytest.raises(ConfigError, match="already holds the tuning of another configuration"):
        tuning.work(other)
    more_images = compose_config([*GAUSSIAN, "solver=pinv", "tune.trials=1", "tune.images=2",
                                  *tune_overrides(tmp_path)])
    with pytest.raises(ConfigError, match="was tuned with tune.images=1"):
        tuning.work(more_images)
    more_trials = compose_config([*GAUSSIAN, "solver=pinv", "tune.trials=2", "tune.images=1",
                                  *tune_overrides(tmp_path)])
    assert len(pd.read_csv(tuning.work(more_trials).folder / "trials.csv")) == 2  # a larger budget extends it


def test_a_trial_with_a_diverged_image_or_a_missing_metric_fails():
    rows = pd.DataFrame({"status": ["ok", "ok"], "psnr": [20.0, 22.0]})
    assert tuning.trial_values(rows, ["psnr"]) == [21.0]
    assert tuning.trial_values(rows.assign(status=["ok", "diverged"]), ["psnr"]) is None
    assert tuning.trial_values(rows, ["lpips"]) is None


def test_the_tuner_finds_the_closed_form_optimum_of_regularised_least_squares(tmp_path):
    """Under N(0, s^2 I) with noise sigma_y, A^T (A A^T + delta I)^-1 y is the exact posterior mean
    at delta* = sigma_y^2 / s^2 = 0.01 / 4: the distance to the posterior mean is 0 there and grows
    away from it. Searching delta on a log scale over [1e-6, 10] (seven decades), 30 trials of TPE
    land within a tenth of a decade of delta* (x0.79..x1.26; measured for tune.seed 0, 1, 2: -17%,
    +9%, +3%; one worker, so the result is reproducible)."""
    cfg = compose_config([*GAUSSIAN, "solver=pinv", "tune.objective=mse_to_post_mean", "tune.trials=30",
                          "tune.images=3", *tune_overrides(tmp_path)])
    study = tuning.work(cfg)
    path = tmp_path / "conf" / "tuned" / "gaussian" / "random_A_dy4__mse_to_post_mean.yaml"
    tuned = yaml.safe_load(path.read_text())["tuned"]
    entry = tuned["solvers"]["pinv"]
    best = entry["settings"]["solver.delta"]
    assert abs(math.log10(best / 0.0025)) < 0.1, best
    assert entry["trials"] == 30 and entry["objective"] == "mse_to_post_mean" and entry["value"] < 1e-2
    assert entry["validation_ids"] == ["d8_v000", "d8_v001", "d8_v002"]
    frame = pd.read_csv(study.folder / "trials.csv")
    assert len(frame) == 30 and set(frame["state"]) == {"COMPLETE"} and set(frame["split"]) == {"validation"}
    assert (study.folder / "history.png").is_file() and (study.folder / "cost.json").is_file()


def test_tuning_never_evaluates_a_test_image_and_the_test_split_runs_with_the_tuned_settings(tmp_path):
    """Photos: the test split of the experiment (24 crops) against every image any trial solved;
    then +tuned runs the test split with the tuned delta, in its own directory."""
    from reddiff_bench.run.pipeline import run

    overrides = ["model=photos_unet16", "dataset=photos", "dataset.num_images=24", "task=inpaint_box", "solver=pinv",
                 "logger=none", "progress=false", "tune.objective=psnr", "tune.trials=4", "tune.images=6",
                 *tune_overrides(tmp_path)]
    study = tuning.work(compose_config(overrides))
    test = PhotoCrops(num_images=24)
    test_ids = {test.image_id(i) for i in range(len(test))}
    seen = pd.concat([read_rows(p) for p in sorted(study.folder.glob("trials/*/metrics.csv"))])
    assert len(seen) == 4 * 6 and set(seen["split"]) == {"validation"}
    assert not set(seen["image_id"].astype(str)) & test_ids
    validation = PhotoCrops(num_images=6, split="validation", test_images=24)
    for name, r, c in validation.items:  # not one pixel of a test crop
        assert all(not (n == name and abs(r - tr) < 16 and abs(c - tc) < 16) for n, tr, tc in test.items)

    searchpath = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    tuned_value = yaml.safe_load((tmp_path / "conf" / "tuned" / "photos_unet16" / "inpaint_box.yaml").read_text())[
        "tuned"]["solvers"]["pinv"]["settings"]["solver.delta"]
    cfg = compose_config([*overrides, searchpath, "+tuned=photos_unet16/inpaint_box"])
    assert cfg.solver.delta == tuned_value
    outcome = run(cfg, tmp_path / "test_run")
    assert set(outcome.rows["split"]) == {"test"} and set(outcome.rows["image_id"]) == test_ids
    with pytest.raises(ConfigError, match="holds no tuned settings for solver 'dps'"):
        compose_config([*overrides, searchpath, "+tuned=photos_unet16/inpaint_box", "solver=dps"])
    with pytest.raises(ConfigError, match="tuned for model 'photos_unet16' on task 'inpaint_box'"):
        compose_config([*overrides, searchpath, "+tuned=photos_unet16/inpaint_box", "task=sr4"])


def test_a_tuned_run_names_its_own_directory():
    from reddiff_bench.run.identity import directory_name

    assert directory_name(["solver=dps", "+tuned=photos_unet16/inpaint_box"], "{}") != directory_name(
        ["solver=dps"], "{}")


def test_multi_objective_tuning_keeps_the_pareto_front_and_tunes_the_cost_settings(tmp_path):
    cfg = compose_config([*GAUSSIAN, "solver=ddim", "tune.objective=[mse_to_post_mean,nfe]", "tune.trials=5",
                          "tune.images=2", *tune_overrides(tmp_path)])
    study = tuning.work(cfg)
    frame = pd.read_csv(study.folder / "trials.csv")
    assert {"param.eta", "param.steps", "mse_to_post_mean", "nfe"} <= set(frame.columns)
    assert frame["param.steps"].nunique() > 1
    entry = yaml.safe_load((tmp_path / "conf" / "tuned" / "gaussian" / "random_A_dy4__mse_to_post_mean-nfe.yaml"
                            ).read_text())["tuned"]["solvers"]["ddim"]
    assert entry["objective"] == ["mse_to_post_mean", "nfe"] and len(entry["value"]) == 2
    handle = study.load()
    assert entry["trial"] in {t.number for t in handle.best_trials}


# --- processes: kill -9, two workers --------------------------------------------------------------

def _tune_command(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "reddiff_bench", "tune", *GAUSSIAN, "solver=dps", "tune.objective=mse_to_post_mean",
            "batch_size=1", *tune_overrides(tmp_path), *extra]


def _study(tmp_path: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "tuning" / "mse_to_post_mean" / "gaussian" / "random_A_dy4" / "dps" / "journal.log")))
    return optuna.load_study(study_name="gaussian/random_A_dy4/dps", storage=storage)


@pytest.mark.slow
def test_kill_9_during_tuning_then_the_same_command_repeats_no_finished_trial(tmp_path):
    """DPS (1000 steps, about 1.7 s per image here), 3 trials of 4 validation images: killed with
    SIGKILL once trial 1 has a row, then the same command."""
    command = _tune_command(tmp_path, "tune.trials=3", "tune.images=4")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    trials = tmp_path / "tuning" / "mse_to_post_mean" / "gaussian" / "random_A_dy4" / "dps" / "trials"
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (trials / "0001" / "metrics.csv").is_file():
        time.sleep(0.05)
    assert (trials / "0001" / "metrics.csv").is_file(), "trial 1 never wrote a row"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    states = {t.number: t.state for t in _study(tmp_path).get_trials()}
    assert states == {0: optuna.trial.TrialState.COMPLETE, 1: optuna.trial.TrialState.RUNNING}
    finished = (trials / "0000" / "metrics.csv").read_bytes()
    partial = read_rows(trials / "0001" / "metrics.csv")
    assert 1 <= len(partial) < 4

    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left running by a worker that stopped" in result.stderr + result.stdout
    trials_now = _study(tmp_path).get_trials()
    assert [t.number for t in trials_now] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials_now)
    assert (trials / "0000" / "metrics.csv").read_bytes() == finished  # trial 0 was not run again
    resumed = read_rows(trials / "0001" / "metrics.csv")
    assert len(resumed) == 4 and resumed["image_id"].is_unique  # its finished images were kept, not redone
    pd.testing.assert_frame_equal(resumed.iloc[: len(partial)].reset_index(drop=True), partial)
    assert len((trials / "0000" / "wall_seconds.txt").read_text().split()) == 1


@pytest.mark.slow
def test_two_workers_under_the_gpus_launcher_share_one_study_without_lost_or_repeated_trials(tmp_path):
    """hydra/launcher=gpus with two CPU slots (launch.devices=[0,1]): two processes, one study."""
    command = _tune_command(tmp_path, "tune.trials=6", "tune.images=2", "tune.workers=2", "hydra/launcher=gpus",
                            "launch.devices=[0,1]")
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _study(tmp_path).get_trials()
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    slots = set()
    folder = tmp_path / "tuning" / "mse_to_post_mean" / "gaussian" / "random_A_dy4" / "dps" / "trials"
    for t in trials:
        rows = read_rows(folder / f"{t.number:04d}" / "metrics.csv")
        assert len(rows) == 2 and rows["image_id"].is_unique  # each trial solved once, by one worker
        assert rows["gpu_slot"].nunique() == 1
        slots |= set(rows["gpu_slot"])
    assert slots == {0, 1}, "both workers ran trials"
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6


@pytest.mark.slow
def test_two_workers_under_submitits_local_executor_the_slurm_launchers_twin(tmp_path):
    """hydra/launcher=submitit_local runs each worker as a submitit job, as the slurm launcher
    does on a cluster (no SLURM here): one study, two workers, every trial once."""
    command = _tune_command(tmp_path, "tune.trials=4", "tune.images=1", "tune.workers=2",
                            "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _study(tmp_path).get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert (tmp_path / "tuning" / "mse_to_post_mean" / "gaussian" / "random_A_dy4" / "dps" / "trials.csv").is_file()
