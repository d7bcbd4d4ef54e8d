"""Tables from results stores: means, confidence intervals, pivots and the CLI's errors."""

import math

import pandas as pd
import pytest

from reddiff_bench.cli.report import main
from reddiff_bench.study.report import pivot_on, render, rows_below, summary


def write_runs(root):
    """Two sweep jobs (solvers a and b) on two tasks, three problems each, one failed row."""
    for solver, offset in (("a", 0.0), ("b", 10.0)):
        rows = []
        for task in ("t1", "t2"):
            for i in range(3):
                rows.append(dict(run=f"{solver}", solver=solver, task=task, image_id=i, status="ok",
                                 sw_to_posterior=offset + i + (task == "t2"), config_hash=f"h{solver}{task}"))
        rows.append(dict(run=solver, solver=solver, task="t1", image_id=9, status="diverged",
                         sw_to_posterior=float("nan"), config_hash=f"h{solver}t1"))
        job = root / f"0_{solver}"
        job.mkdir(parents=True)
        pd.DataFrame(rows).to_csv(job / "metrics.csv", index=False)


def test_summary_means_intervals_and_failures(tmp_path):
    write_runs(tmp_path)
    table = summary(rows_below(tmp_path), ["task", "solver"])
    assert table.mean.loc[("t2", "b"), "sw_to_posterior"] == pytest.approx(12.0)
    assert table.count.loc[("t2", "b")] == 3
    assert table.counts["failed"].loc[("t1", "a")] == 1 and ("t2", "a") not in table.counts["failed"].index
    half = 1.96 * 1.0 / math.sqrt(3)  # std of (0, 1, 2) is 1
    assert table.half.loc[("t1", "a"), "sw_to_posterior"] == pytest.approx(half)
    text = render(table)
    assert f"| t1 | a | 3 | **1 ± {half:.2g}** | 1 |" in text  # the best bold; the failed image after the metric
    assert "| t2 | a | 3 | 2 | 0 |" in render(table, intervals=False)  # means alone
    csv = pd.read_csv(pd.io.common.StringIO(render(table, "csv")))
    assert list(csv.columns) == ["task", "solver", "sw_to_posterior_mean", "sw_to_posterior_ci95", "images", "failed"]
    assert r"\toprule" in render(table, "latex")


def test_pivot_puts_solvers_in_columns(tmp_path):
    write_runs(tmp_path)
    grid = pivot_on(summary(rows_below(tmp_path), ["task", "solver"]), "solver", "sw_to_posterior")
    assert grid.metrics == ["a", "b"] and grid.groups == ["task"]
    assert grid.mean.loc["t2", "b"] == pytest.approx(12.0)
    with pytest.raises(ValueError, match="add 'seed' to --group"):
        pivot_on(summary(rows_below(tmp_path), ["task", "solver"]), "seed", "sw_to_posterior")


def test_cli_prints_the_grid_and_names_bad_input(tmp_path, capsys):
    write_runs(tmp_path)
    assert main([str(tmp_path), "--pivot", "solver", "--value", "sw_to_posterior"]) == 0
    out = capsys.readouterr().out
    assert "| task | images | a ↓ | b ↓ |" in out  # a solver per column, the metric's direction in each header
    assert "| t2 | 3 | **2 ± 1.1** | 12 ± 1.1 |" in out  # lower is better: the best of each row is bold
    assert main([str(tmp_path / "missing")]) == 2
    assert "no metrics.csv below" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--pivot", "solver"])


def sweep_config(tmp_path, *overrides):
    from .helpers import compose_config

    return compose_config(["logger=none", f"hydra.sweep.dir={tmp_path}/sweep", *overrides], run_dir=tmp_path / "sweep")


def finished_job(cfg, folder, solver: str, error: str | None = None):
    """A job directory as the pipeline leaves it (rows, or error.txt), announced to the callback."""
    from omegaconf import OmegaConf, open_dict, read_write

    folder.mkdir(parents=True)
    if error:
        (folder / "error.txt").write_text(error)
    else:
        pd.DataFrame([dict(task="t", solver=solver, image_id="a", status="ok", psnr=20.0, config_hash=solver)]).to_csv(
            folder / "metrics.csv", index=False)
    job = OmegaConf.create(OmegaConf.to_container(cfg))
    with read_write(job), open_dict(job):
        job.hydra.runtime.output_dir = str(folder)
    return job


def test_the_sweep_table_covers_exactly_this_sweeps_jobs_and_errors_set_the_status(tmp_path, capsys, monkeypatch):
    """Regression (issue 22): a sweep into a folder holding another sweep's jobs tabulated them too
    (under the gpus launcher, whose workers run the jobs in other processes), and a sweep with a
    refused job exited 0."""
    from reddiff_bench.study.report import SWEEP_MANIFEST, SweepReport

    monkeypatch.delenv(SWEEP_MANIFEST, raising=False)
    cfg = sweep_config(tmp_path)
    finished_job(cfg, tmp_path / "sweep" / "solver=old", "old")  # an earlier sweep's job, never announced
    callback = SweepReport()
    callback.on_multirun_start(cfg)
    worker = SweepReport()  # a launcher's worker process has its own callback object
    for name, error in (("dps", None), ("ddrm", "refused: solver.steps must be an integer >= 1\n")):
        worker.on_job_start(finished_job(cfg, tmp_path / "sweep" / f"solver={name}", name, error))
    with pytest.raises(SystemExit) as done:
        callback.on_multirun_end(cfg)
    assert done.value.code == 2  # a refused job: the table is kept, the status says so
    table = (tmp_path / "sweep" / "table.md").read_text()
    assert "| dps |" in table and "| old |" not in table
    assert "solver=ddrm: refused: solver.steps" in capsys.readouterr().err
    monkeypatch.delenv(SWEEP_MANIFEST, raising=False)
    allowed = sweep_config(tmp_path / "b", "report.allow_errors=true")
    callback.on_multirun_start(allowed)
    worker.on_job_start(finished_job(allowed, tmp_path / "b" / "sweep" / "x", "dps"))
    worker.on_job_start(finished_job(allowed, tmp_path / "b" / "sweep" / "y", "pgdm", "failed: Traceback\nBoom\n"))
    callback.on_multirun_end(allowed)  # no SystemExit: errors allowed, and the table has rows


def test_the_gpus_launcher_without_a_gpu_and_missing_data_are_refused_once_before_any_job(tmp_path, capsys):
    """Regression (issue 22): each job repeated the same error, and a missing checkpoint showed
    only after the data was fixed."""
    from reddiff_bench.study.report import SweepReport

    cfg = sweep_config(tmp_path, "hydra/launcher=gpus", "+experiment=imagenet_inpaint",
                       f"paths.data_dir={tmp_path}/nodata", f"paths.checkpoint_dir={tmp_path}/nockpt",
                       "model.download=false")
    with pytest.raises(SystemExit) as done:
        SweepReport().on_multirun_start(cfg)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "no job was started" in err and "found no CUDA device" in err
    assert "imagenet/val does not exist" in err and "256x256_diffusion_uncond.pt" in err  # everything at once


def test_a_table_footnote_names_the_fid_and_kid_reference_of_its_runs():
    """Issue 23: FID/KID cells did not say what they were computed against."""
    from reddiff_bench.study.tables import aggregate, to_latex, to_markdown

    rows = pd.DataFrame({"solver": ["a", "a", "b", "b"], "psnr": [1.0, 2.0, 3.0, 4.0], "status": ["ok"] * 4})
    runs = pd.DataFrame({"solver": ["a", "b"], "fid": [10.0, 12.0], "kid": [0.1, 0.2],
                         "fid_reference": ["statistics file imagenet256_train_mean_std.npz (mu, sigma)"] * 2,
                         "kid_reference": ["ground truth (2 images)"] * 2})
    agg = aggregate(rows, ["solver"], ["psnr", "fid", "kid"], runs)
    text = to_markdown(agg)
    assert "FID: against statistics file imagenet256_train_mean_std.npz (mu, sigma)" in text
    assert "KID: against ground truth (2 images)" in text
    assert r"FID: against statistics file imagenet256\_train\_mean\_std.npz" in to_latex(agg)
    unnamed = runs.drop(columns="fid_reference")
    assert "against" not in to_markdown(aggregate(rows, ["solver"], ["psnr", "fid"], unnamed))


def test_paired_differences_equal_scipys_paired_t_interval_and_wilcoxon_and_bold_only_significant_ones():
    """Issue 23: tables compared unpaired means (RED-Diff 28.2 ± 1.4 against PiGDM 28.58 ± 1.4 dB on box
    inpainting): nobody could tell whether one beats the other. The paired table differences each
    solver with the reference on the same images."""
    import numpy as np
    from scipy import stats

    from reddiff_bench.study.tables import paired, to_latex, to_markdown

    rng = np.random.default_rng(0)
    base = rng.normal(25, 3, size=30)
    rows = []
    for solver, shift, spread in (("reddiff", 0.0, 0.0), ("good", 1.0, 0.5), ("same", 0.0, 0.5)):
        values = base + shift + spread * rng.normal(size=30)
        rows += [dict(task="t", solver=solver, image_id=f"i{k}", status="ok", psnr=v, lpips=0.3 - 0.01 * (v - 25))
                 for k, v in enumerate(values)]
    rows.append(dict(task="t", solver="good", image_id="only_here", status="ok", psnr=99.0, lpips=0.0))  # unpaired
    frame = pd.DataFrame(rows)
    agg = paired(frame, ["task", "solver"], ["psnr", "lpips", "fid"], reference="reddiff")
    assert list(agg.mean.index) == [("t", "good"), ("t", "same")] and agg.metrics[:3] == ["psnr", "psnr_p", "psnr_win"]
    ours = frame[frame.solver == "good"].set_index("image_id").psnr.drop("only_here")
    ref = frame[frame.solver == "reddiff"].set_index("image_id").psnr
    d = (ours - ref.loc[ours.index]).to_numpy()
    interval = stats.ttest_rel(ours.to_numpy(), ref.loc[ours.index].to_numpy()).confidence_interval(0.95)
    assert agg.mean.at[("t", "good"), "psnr"] == pytest.approx(d.mean(), rel=1e-12)
    assert agg.half.at[("t", "good"), "psnr"] == pytest.approx((interval.high - interval.low) / 2, rel=1e-10)
    assert agg.mean.at[("t", "good"), "psnr_p"] == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-12)
    assert agg.mean.at[("t", "good"), "psnr_win"] == pytest.approx((d > 0).mean())
    assert agg.mean.at[("t", "good"), "lpips_win"] == pytest.approx((d > 0).mean())  # lower LPIPS is better
    assert agg.count[("t", "good")] == 30  # the image reddiff did not solve is left out
    assert agg.bold["psnr"] == {("t", "good")}  # "same" differs by noise only: not bold
    assert agg.mean.at[("t", "same"), "psnr_p"] > 0.05
    text = to_markdown(agg)
    assert "| t | good | 30 | **" in text and "Wilcoxon signed-rank" in text and "fid" not in text.lower()
    assert r"$\Delta$ PSNR" in to_latex(agg, caption="x")
