"""End-to-end runs through the Hydra config: the run directory, the rows, W&B, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

from reddiff_bench.run.pipeline import run
from reddiff_bench.study.bench import solver_names

from .conftest import REPO, SMALL_GMM
from .helpers import compose_config, wandb_summary

FAST = SMALL_GMM + ["dataset.num_images=3", "progress=false"]


def run_config(tmp_path, overrides, name="run"):
    run_dir = tmp_path / name
    steps = [] if any(o.startswith("solver=") for o in overrides) else ["solver.steps=20"]
    cfg = compose_config(FAST + steps + overrides, run_dir=run_dir)
    summary = run(cfg, run_dir).summary
    return run_dir, summary


def test_run_dir_holds_config_rows_summary_grid_and_wandb(tmp_path):
    run_dir, summary = run_config(tmp_path, ["logger=wandb", "batch_size=2"])
    for name in ("config.yaml", "metrics.csv", "summary.json", "grid.png"):
        assert (run_dir / name).is_file(), name
    config = OmegaConf.load(run_dir / "config.yaml")
    assert config.solver._target_ == "reddiff_bench.solvers.REDDiff" and "hydra" not in config
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert len(rows) == 3 and set(rows["status"]) == {"ok"}
    for column in ("run", "solver", "task", "dataset", "model", "seed", "image_id", "psnr", "ssim",
                   "mse_to_post_mean", "nfe", "vjp", "seconds", "peak_mem_mb", "status", "measurement_hash"):
        assert column in rows.columns, column
    assert (rows["nfe"] == 20).all() and (rows["vjp"] == 0).all()
    assert rows["peak_mem_mb"].gt(0).all() and rows["seconds"].gt(0).all()
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["psnr"] == pytest.approx(rows["psnr"].mean())
    assert len(list((run_dir / "measurements").glob("*.pt"))) == 3
    assert "32x32" in on_disk["notes"]["lpips"]  # 16x16 crops: LPIPS says why it is missing
    assert rows["lpips"].isna().all()
    logged = wandb_summary(run_dir)
    assert float(logged["psnr"]) == pytest.approx(on_disk["psnr"])
    assert float(logged["mse_to_post_mean"]) == pytest.approx(on_disk["mse_to_post_mean"])


def test_rows_do_not_depend_on_batch_size(tmp_path):
    one, _ = run_config(tmp_path, ["logger=none", "batch_size=1"], "one")
    three, _ = run_config(tmp_path, ["logger=none", "batch_size=3"], "three")
    a, b = pd.read_csv(one / "metrics.csv"), pd.read_csv(three / "metrics.csv")
    assert list(a["image_id"]) == list(b["image_id"])
    assert list(a["measurement_hash"]) == list(b["measurement_hash"])
    for column in ("psnr", "ssim", "mse_to_post_mean"):
        assert a[column].to_numpy() == pytest.approx(b[column].to_numpy(), rel=1e-4)


def test_every_solver_sees_the_same_measurements(tmp_path):
    a, _ = run_config(tmp_path, ["logger=none", "solver=pinv"], "pinv")
    b, _ = run_config(tmp_path, ["logger=none"], "reddiff")
    assert list(pd.read_csv(a / "metrics.csv")["measurement_hash"]) == \
        list(pd.read_csv(b / "metrics.csv")["measurement_hash"])


def test_a_diverged_image_gets_its_status_and_the_run_goes_on(tmp_path):
    run_dir = tmp_path / "nan"
    cfg = compose_config(FAST + ["logger=none", "batch_size=3"], run_dir=run_dir)
    with open_dict(cfg):
        cfg.solver = OmegaConf.create({"_target_": "tests.helpers.DivergesOnSecondImage"})
    summary = run(cfg, run_dir).summary
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert list(rows["status"]) == ["ok", "diverged", "ok"]
    assert rows.loc[1, ["psnr", "ssim"]].isna().all()
    assert summary["num_diverged"] == 1 and summary["num_ok"] == 2
    assert summary["psnr"] == pytest.approx(rows.loc[[0, 2], "psnr"].mean())


def test_image_size_mismatch_is_a_clear_error(tmp_path):
    from reddiff_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset.size=16"):
        run_config(tmp_path, ["logger=none", "dataset.size=32"])


def _cli(*args, timeout=120):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}  # robust to a busy machine
    return subprocess.run([sys.executable, "-m", "reddiff_bench", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_unknown_group_option_names_the_choices(tmp_path):
    proc = _cli("solver=nope", "logger=none", f"paths.output_dir={tmp_path}")
    assert proc.returncode != 0
    assert "solver/nope" in proc.stderr and "reddiff" in proc.stderr


@pytest.mark.slow
def test_imagenet_experiment_without_data_stops_before_any_work_with_what_is_missing(tmp_path):
    proc = _cli("+experiment=imagenet_inpaint", f"paths.data_dir={tmp_path}/nodata",
                         f"paths.checkpoint_dir={tmp_path}/nockpt", f"paths.output_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{tmp_path}/nodata/imagenet/val" in proc.stderr and "dataset.root" in proc.stderr
    assert not list(tmp_path.rglob("metrics.csv")) and not list(tmp_path.rglob("state.json"))


@pytest.mark.slow
def test_imagenet_experiment_without_checkpoint_names_url_file_and_key(tmp_path):
    data = tmp_path / "data" / "imagenet" / "val" / "n01440764"
    data.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (300, 280), (120, 30, 200)).save(data / "ILSVRC2012_val_00000293.JPEG")
    proc = _cli("+experiment=imagenet_inpaint", f"paths.data_dir={tmp_path}/data",
                         f"paths.checkpoint_dir={tmp_path}/nockpt", f"paths.output_dir={tmp_path}",
                         "model.download=false")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "256x256_diffusion_uncond.pt" in proc.stderr and "https://" in proc.stderr
    assert "model.checkpoint" in proc.stderr
    assert not list(tmp_path.rglob("metrics.csv"))


@pytest.mark.slow
def test_gmm_posterior_quick_sweep_prints_its_table(tmp_path):
    proc = _cli("+experiment=gmm_posterior_quick", f"paths.output_dir={tmp_path}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tables = list(tmp_path.rglob("table.md"))
    assert len(tables) == 1
    text = tables[0].read_text()
    solvers = [name for name in solver_names("pixel") if name != "pinv"]
    for solver in solvers:
        assert f"| {solver} " in text
    assert "SW2 to posterior ↓" in text and "±" in text
    rows = pd.concat([pd.read_csv(p) for p in tmp_path.rglob("metrics.csv")])
    assert len(rows) == 5 * len(solvers) and (rows["status"] == "ok").all()
    sw = rows.groupby("solver")["sw_to_posterior"].mean()
    for sampler in ("dps", "pgdm", "mcgdiff", "ddnm"):
        assert sw[sampler] < sw["ddim"], sw


def test_a_solver_that_cannot_handle_a_task_is_refused_before_any_work(tmp_path):
    from reddiff_bench.errors import ConfigError

    run_dir = tmp_path / "refused"
    cfg = compose_config(FAST + ["logger=none", "solver=ddrm"], run_dir=run_dir)
    with open_dict(cfg):
        cfg.task.degradation = OmegaConf.create({"_target_": "tests.helpers.SquareDegradation"})
    with pytest.raises(ConfigError, match="cannot solve task"):
        run(cfg, run_dir)
    assert not (run_dir / "metrics.csv").exists()


def test_a_run_can_replay_the_saved_measurements_of_another(tmp_path):
    first, _ = run_config(tmp_path, ["logger=none", "solver=pinv", "task=inpaint_random"], "first")
    replay, _ = run_config(tmp_path, ["logger=none", "solver=pinv", "task=inpaint_random", "seed=7",
                                      f"measurements_from={first / 'measurements'}"], "replay")
    a, b = pd.read_csv(first / "metrics.csv"), pd.read_csv(replay / "metrics.csv")
    assert list(a["measurement_hash"]) == list(b["measurement_hash"])  # same masks and y despite the seed
    assert a["psnr"].to_numpy() == pytest.approx(b["psnr"].to_numpy())
    fresh, _ = run_config(tmp_path, ["logger=none", "solver=pinv", "task=inpaint_random", "seed=7"], "fresh")
    assert list(pd.read_csv(fresh / "metrics.csv")["measurement_hash"]) != list(a["measurement_hash"])


class InterruptedOnSecondBatch:
    """A test solver: the pseudo-inverse, until the second batch, where Ctrl-C arrives."""

    calls = 0

    def solve(self, prior, operator, y, *, sigma_y, generators, callback=None):
        type(self).calls += 1
        if type(self).calls == 2:
            raise KeyboardInterrupt
        from reddiff_bench.solvers import SolverResult

        return SolverResult(x0=operator.init_estimate(y))


def test_an_interrupted_run_says_so_keeps_its_rows_and_resumes(tmp_path):
    """Regression (issue 22): Ctrl-C left state.json at 'failed' ('KeyboardInterrupt')."""
    run_dir = tmp_path / "run"
    cfg = compose_config(FAST + ["logger=none", "batch_size=1"], run_dir=run_dir)
    with open_dict(cfg):
        cfg.solver = OmegaConf.create({"_target_": "tests.test_pipeline.InterruptedOnSecondBatch"})
    with pytest.raises(KeyboardInterrupt):
        run(cfg, run_dir)
    state = json.loads((run_dir / "state.json").read_text())
    assert state["state"] == "interrupted" and state["signal"] == "SIGINT"
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 1  # the first image's row is kept
    run(cfg, run_dir)  # the same command resumes
    assert json.loads((run_dir / "state.json").read_text())["state"] == "complete"
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 3 and InterruptedOnSecondBatch.calls == 4


def test_a_missing_metric_is_explained_in_the_notes(tmp_path):
    """Regression (issue 22): with sigma_y = 0 data_consistency was null with no note."""
    _, summary = run_config(tmp_path, ["logger=none", "solver=pinv", "task.noise.sigma_y=0"])
    assert summary["data_consistency"] is None
    assert "sigma_y = 0" in summary["notes"]["data_consistency"]


def test_an_unreadable_saved_estimate_is_named_and_once_deleted_left_out(tmp_path):
    """A corrupt outputs/<id>.png stopped the report with PIL's own error."""
    from reddiff_bench.errors import ConfigError

    run_dir, _ = run_config(tmp_path, ["logger=none", "solver=pinv", "metrics.fid=false"])
    broken = sorted((run_dir / "outputs").glob("*.png"))[0]
    broken.write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=f"saved estimate {broken} cannot be read.*Delete it"):
        run_config(tmp_path, ["logger=none", "solver=pinv", "metrics.fid=false"])
    broken.unlink()
    _, summary = run_config(tmp_path, ["logger=none", "solver=pinv", "metrics.fid=false"])
    assert summary["num_images"] == 3
    assert json.loads((run_dir / "state.json").read_text())["state"] == "complete"


class StepsThenInterruptedOnSecondBatch(InterruptedOnSecondBatch):
    """InterruptedOnSecondBatch that reports two solver steps, as a real solver does."""

    calls = 0

    def solve(self, prior, operator, y, *, sigma_y, generators, callback=None):
        for step in range(2):
            if callback is not None:
                callback(step, {"loss_obs": float(step + 1)})
        return super().solve(prior, operator, y, sigma_y=sigma_y, generators=generators, callback=callback)


def test_a_resumed_offline_wandb_run_is_whole_in_its_newest_folder(tmp_path):
    """Regression (issue 22): a resumed offline run wrote a second offline-run folder without the
    first batch's curves; ``wandb sync`` keeps one folder per run id, so the curves were lost."""
    from .helpers import wandb_records

    run_dir = tmp_path / "run"
    cfg = compose_config(FAST + ["logger=wandb", "batch_size=1", "profile.memory=false"], run_dir=run_dir)
    with open_dict(cfg):
        cfg.solver = OmegaConf.create({"_target_": "tests.test_pipeline.StepsThenInterruptedOnSecondBatch"})
    with pytest.raises(KeyboardInterrupt):
        run(cfg, run_dir)
    (first,) = (run_dir / "wandb").glob("offline-run-*")  # dated a day earlier, as a requeued attempt's would be:
    first.rename(first.with_name("offline-run-20000101_000000-" + first.name.rsplit("-", 1)[1]))  # W&B reuses a
    run(cfg, run_dir)                                                                 # folder of the same second
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and folders[0].name[-16:] == folders[1].name[-16:]  # one id, two attempts
    assert (run_dir / "wandb" / "latest-run").resolve() == folders[1].resolve()  # what the README says to sync
    (newest,) = folders[-1].glob("run-*.wandb")
    steps, tables = [], 0
    for record in wandb_records(newest):
        if record.WhichOneof("record_type") == "history":
            values = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            if "solver/loss_obs" in values:
                steps.append((int(values["solver_step"]), float(values["solver/loss_obs"])))
            tables += "images/path" in values
    assert steps == [(0, 1.0), (1, 2.0)] and tables == 1  # the first batch's curve, once, and the rows
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert float(wandb_summary(run_dir)["psnr"]) == pytest.approx(on_disk["psnr"])
