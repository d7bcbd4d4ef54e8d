"""The study layer (issue 15): tables and figures from a synthetic tree of rows, checked cell by
cell; the committed studies rebuild exactly; memory profiles; the paper scale's refusal; the W&B
report and the runs' W&B grouping."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from reddiff_bench.run.settings import CONF_DIR, compose
from reddiff_bench.study import studies as study_module
from reddiff_bench.study.tables import aggregate, best_cells, pivot, to_latex, to_markdown

from .conftest import REPO
from .test_scale import ENV, QUICK, cli

SOLVERS = ["reddiff", "dps", "pgdm"]


def synthetic_rows(seed: int = 0) -> pd.DataFrame:
    """Two tasks x three solvers x five images with known values; one diverged row; LPIPS missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in ("inpaint_box", "sr4"):
        for k, solver in enumerate(SOLVERS):
            for i in range(5):
                rows.append(dict(model="m", task=task, solver=solver, image_id=f"img{i}", status="ok",
                                 psnr=20 + 3 * k + (task == "sr4") + rng.normal(0, 0.5),
                                 ssim=0.5 + 0.1 * k + rng.normal(0, 0.01), lpips=math.nan,
                                 seconds=1.0 + k, nfe=100 * (k + 1), vjp=0 if k == 0 else 100 * k,
                                 peak_mem_mb=1000 + 100 * k, **{"solver.lam": [0.1, 0.5, 1.0][k]}))
            rows.append(dict(model="m", task=task, solver=solver, image_id="bad", status="diverged", psnr=math.nan))
    return pd.DataFrame(rows)


def test_cells_are_pandas_means_over_ok_rows_with_95_percent_intervals():
    rows = synthetic_rows()
    agg = aggregate(rows, ["task", "solver"], ["psnr", "ssim", "lpips"], notes={"lpips": "LPIPS needs 32x32"})
    ok = rows[rows["status"] == "ok"]
    for (task, solver), part in ok.groupby(["task", "solver"]):
        assert agg.mean.loc[(task, solver), "psnr"] == pytest.approx(part["psnr"].mean())
        assert agg.half.loc[(task, solver), "psnr"] == pytest.approx(1.96 * part["psnr"].std(ddof=1) / math.sqrt(5))
        assert agg.count.loc[(task, solver)] == 5  # the diverged row is not counted
    text = to_markdown(agg, ["task"])
    assert "| task | solver | images | PSNR ↑ | SSIM ↑ | LPIPS ↓ |" in text
    assert "–*" in text and "* LPIPS: LPIPS needs 32x32" in text  # NaN: a dash and its reason
    first = ok[(ok.task == "inpaint_box") & (ok.solver == "reddiff")]["psnr"]
    assert f"{first.mean():.4g} ± {1.96 * first.std(ddof=1) / math.sqrt(5):.2g}" in text


def test_the_bold_cell_is_the_best_of_its_column_given_the_direction():
    rows = synthetic_rows()
    rows.loc[rows.solver == "dps", "seconds"] = 0.5  # the cheapest: lower is better
    agg = aggregate(rows, ["task", "solver"], ["psnr", "seconds"])
    best = best_cells(agg, ["task"])
    for task in ("inpaint_box", "sr4"):
        block = agg.mean.xs(task, level="task")
        assert (task, block["psnr"].idxmax()) in best["psnr"]
        assert best["seconds"] == {("inpaint_box", "dps"), ("sr4", "dps")}
    text = to_markdown(agg, ["task"])
    winner = agg.mean.loc[("sr4", "pgdm"), "psnr"]
    assert f"**{winner:.4g} ±" in text
    grid = pivot(agg, "solver", "psnr")  # solvers as columns: the best of each row
    assert grid.row_best and list(grid.mean.columns) == SOLVERS
    assert best_cells(grid)["pgdm"] == {"inpaint_box", "sr4"}


def test_a_pivot_cell_of_a_run_never_made_is_a_dash_with_its_reason():
    """The Gaussian-mixture grid runs the costly samplers at d = 8 and 80 only: their empty
    d = 800 cells say that they were not run, not that a metric failed."""
    rows = synthetic_rows()
    rows = rows[~((rows.solver == "dps") & (rows.task == "sr4"))]
    grid = pivot(aggregate(rows, ["task", "solver"], ["psnr"]), "solver", "psnr")
    assert math.isnan(grid.mean.loc["sr4", "dps"]) and grid.mean.loc["inpaint_box", "dps"] > 0
    text = to_markdown(grid)
    assert "| sr4 | 5 | " in text and "–*" in text and "* dps: no rows: not run for this task" in text
    assert "reddiff: no rows" not in text  # columns with every cell are not footnoted


def test_latex_is_a_booktabs_table_with_escaped_names_and_footnotes():
    agg = aggregate(synthetic_rows(), ["task", "solver"], ["psnr", "lpips"], notes={"lpips": "needs 32x32 px"})
    tex = to_latex(agg, "Restoration quality.", "tab:main", ["task"])
    assert tex.count(r"\begin{tabular}") == 1 and tex.count(r"\end{tabular}") == 1
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert "inpaint\\_box" in tex and "inpaint_box" not in tex.replace("inpaint\\_box", "")
    assert r"\textbf{" in tex and r"$\pm$" in tex and r"$\uparrow$" in tex and r"$\downarrow$" in tex
    assert "needs 32x32 px" in tex and r"\label{tab:main}" in tex
    for line in tex.splitlines():  # every row of the tabular has as many cells as the header
        if line.endswith(r"\\") and "&" in line:
            assert line.count("&") == 4


def write_study(root: Path) -> None:
    """A small study with every kind of table and figure, over synthetic files."""
    (root / "toy" / "offline").mkdir(parents=True)
    spec = {
        "title": "Toy", "description": "A synthetic study.",
        "scales": {"offline": {"note": "synthetic", "sweeps": {"s": ["solver=pinv"]}}},
        "tables": [{"name": "main", "group": ["task", "solver"], "metrics": ["psnr", "ssim", "lpips", "fid"],
                    "best_within": ["task"]},
                   {"name": "cost", "group": ["task", "solver"], "metrics": ["seconds", "peak_mem_mb"],
                    "ratio_to": "reddiff"},
                   {"name": "grid", "group": ["task", "solver"], "metrics": ["psnr"], "pivot": "solver"},
                   {"name": "floor", "source": "bench.csv", "where": {"kind": "floor"}, "group": ["solver"],
                    "metrics": ["time_ratio", "mem_ratio"]}],
        "figures": [{"name": "tradeoff", "kind": "tradeoff", "x": ["lpips", "ssim"], "y": "psnr",
                     "parameter": "solver.lam", "series": "task"},
                    {"name": "bars", "kind": "ablation_bars", "parameter": "solver", "value": "psnr", "series": "task"},
                    {"name": "cost", "kind": "cost_bars", "metrics": ["seconds", "peak_mem_mb"]},
                    {"name": "side", "kind": "cost_scaling", "source": "bench.csv", "where": {"kind": "scaling_side"},
                     "x": "side", "y": "seconds_per_image"},
                    {"name": "memory", "kind": "memory_over_steps"},
                    {"name": "qualitative", "kind": "qualitative_grid", "solvers": SOLVERS}],
    }
    (root / "toy" / "study.yaml").write_text(yaml.safe_dump(spec))
    folder = root / "toy" / "offline"
    synthetic_rows().to_csv(folder / "rows.csv.gz", index=False)
    runs = [dict(task=t, solver=s, fid=float("nan"), notes=json.dumps({"fid": "Inception weights absent"}))
            for t in ("inpaint_box", "sr4") for s in SOLVERS]
    pd.DataFrame(runs).to_csv(folder / "runs.csv", index=False)
    bench = [dict(kind="floor", solver=s, time_ratio=1.01 + 0.01 * k, mem_ratio=1.0) for k, s in enumerate(SOLVERS)]
    bench += [dict(kind="scaling_side", solver=s, side=side, seconds_per_image=side / 32 * (k + 1))
              for k, s in enumerate(SOLVERS) for side in (32, 64, 128)]
    pd.DataFrame(bench).to_csv(folder / "bench.csv", index=False)
    memory = [dict(solver=s, batch=0, step=i, bytes=(1 + k) * 2**20 * (10 + i), kind="cpu_rss")
              for k, s in enumerate(SOLVERS) for i in range(20)]
    pd.DataFrame(memory).to_csv(folder / "memory.csv.gz", index=False)
    images = np.random.default_rng(0).integers(0, 255, (2, 5, 8, 8, 3), dtype=np.uint8)
    np.savez(folder / "qualitative.npz", images=images, columns=np.array(["ground truth", "measurement", *SOLVERS]),
             rows=np.array(["a", "b"]))


@pytest.mark.slow
def test_every_table_and_figure_is_built_from_a_tree_of_rows(tmp_path, monkeypatch):
    write_study(tmp_path)
    monkeypatch.setattr(study_module, "EXPERIMENTS", tmp_path)
    written = study_module.build("toy", "offline")
    folder = tmp_path / "toy" / "offline"
    for name in ("main", "cost", "cost_ratio", "grid", "floor"):
        for suffix in (".md", ".tex", ".csv"):
            assert folder / f"{name}{suffix}" in written
    ratio = pd.read_csv(folder / "cost_ratio.csv")
    dps = ratio[(ratio.task == "sr4") & (ratio.solver == "dps")].iloc[0]
    assert dps["seconds_mean"] == pytest.approx(2.0) and dps["peak_mem_mb_mean"] == pytest.approx(1.1)
    main = (folder / "main.md").read_text()
    assert "Inception weights absent" in main and "FID ↓" in main
    for name in ("tradeoff", "bars", "cost", "side", "memory", "qualitative"):
        assert folder / f"{name}.png" in written and folder / f"{name}.pdf" in written
        pdf = (folder / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF"), name  # a whole PDF
        with Image.open(folder / f"{name}.png") as image:
            pixels = np.asarray(image.convert("RGB"))
        assert min(pixels.shape[:2]) > 100, name
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 16, f"{name}.png is blank"  # something drawn
    readme = study_module.write_readme("toy")
    text = readme.read_text()
    assert "![qualitative](offline/qualitative.png)" in text and "| task | solver |" in text


def test_make_tables_rebuilds_the_committed_studies_exactly(tmp_path, monkeypatch):
    copy = tmp_path / "experiments"
    shutil.copytree(REPO / "experiments", copy)
    monkeypatch.setattr(study_module, "EXPERIMENTS", copy)
    built = 0
    for name in study_module.studies():
        for scale in study_module.SCALES:
            if scale in study_module.load_spec(name)["scales"]:
                for path in study_module.build(name, scale, figures=False):  # figures: the slow test below
                    if path.suffix in (".md", ".tex", ".csv"):
                        committed = REPO / "experiments" / path.relative_to(copy)
                        assert committed.is_file(), f"{committed} is not committed"
                        assert path.read_text() == committed.read_text(), path
                        built += 1
        assert study_module.write_readme(name).read_text() == (REPO / "experiments" / name / "README.md").read_text()
    assert built >= 20


@pytest.mark.slow
def test_every_committed_figure_is_redrawn_from_the_committed_files(tmp_path, monkeypatch):
    """The figures that the fast rebuild above skips (the tuning study's histories and importances
    among them): each one the specs name and whose data is committed is drawn again, not blank."""
    copy = tmp_path / "experiments"
    shutil.copytree(REPO / "experiments", copy)
    monkeypatch.setattr(study_module, "EXPERIMENTS", copy)
    for name in study_module.studies():
        for scale in study_module.SCALES:
            if not (REPO / "experiments" / name / scale / "rows.csv.gz").is_file():
                continue
            for path in study_module.build(name, scale):
                committed = REPO / "experiments" / path.relative_to(copy)
                if path.suffix == ".png":
                    assert committed.is_file(), f"{committed} is not committed"
                    with Image.open(path) as image:
                        pixels = np.asarray(image.convert("RGB"))
                    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 16, f"{path} is blank"
    assert (copy / "tuning" / "offline" / "history_sr4.png").is_file()


@pytest.mark.slow
def test_the_paper_tables_command_rebuilds_a_copy_of_the_studies(tmp_path):
    """``python -m reddiff_bench paper tables --experiments DIR`` on a copy: the tables and README
    come back byte for byte (figures depend on matplotlib's version); the checkout is not touched."""
    copy = tmp_path / "experiments"
    shutil.copytree(REPO / "experiments" / "main", copy / "main")
    texts = lambda: {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*")  # noqa: E731
                     if p.suffix in (".md", ".tex", ".csv")}
    before = texts()
    proc = subprocess.run([sys.executable, "-m", "reddiff_bench", "paper", "tables", "--study", "main",
                           "--experiments", str(copy)], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = texts()
    assert after.keys() == before.keys() and [p for p in after if after[p] != before[p]] == []


STUDY_SWEEPS = [(study, scale, name, overrides) for study in study_module.studies()
                for scale, plan in study_module.load_spec(study)["scales"].items()
                for name, overrides in {**(plan.get("sweeps") or {}), **(plan.get("full_sweeps") or {}),
                                        **(plan.get("tune") or {})}.items()]


def _tuned_option(overrides: list[str]) -> str | None:
    return next((o.split("=", 1)[1] for o in overrides if o.startswith("+tuned=")), None)


@pytest.mark.parametrize("study,scale,name,overrides", STUDY_SWEEPS,
                         ids=[f"{s[0]}/{s[1]}/{s[2]}" for s in STUDY_SWEEPS])
def test_every_sweep_of_every_study_composes_as_the_study_launches_it(study, scale, name, overrides):
    """Regression: `make paper` on a fresh clone stopped at gmm/offline/quick, whose logger (none)
    had no `group` for the study's `logger.group=` override. Each sweep's first job composes with
    the study's own command line, and the W&B group follows study.name. A sweep of tuned settings
    whose config the study has not written yet (it tunes first) composes without them, and one of
    the scale's tuning entries writes that config (same model and task)."""
    option = _tuned_option(overrides)
    if option and not (CONF_DIR / "tuned" / f"{option}.yaml").is_file():
        plan = study_module.load_spec(study)["scales"][scale]
        model, task = option.split("/")
        written = set()
        for entry, tune_overrides in (plan.get("tune") or {}).items():
            by_task = {}  # one job per task: the tuned config is per model and task
            for job in study_module.tuning_jobs(study, scale, entry, tune_overrides):
                by_task.setdefault(next(o for o in job if o.startswith("task=")), job)
            for job in by_task.values():
                cfg = compose(job)
                written.add(f"{cfg.hydra.runtime.choices.model}/{cfg.task.name}")
        assert option in written, f"no tuning entry of {study}/{scale} writes conf/tuned/{option}.yaml"
        overrides = [o for o in overrides if not o.startswith("+tuned=")]
    cfg = study_module.first_job(study, scale, name, overrides)
    assert (cfg.study.name, cfg.study.scale, cfg.study.sweep) == (study, scale, name)
    if "group" in cfg.logger:
        assert cfg.logger.group == study


def test_a_sweep_that_does_not_compose_stops_the_study_before_any_work(monkeypatch):
    spec = {"scales": {"offline": {"sweeps": {"broken": ["logger.nonexistent_key=1"]}}}}
    monkeypatch.setattr(study_module, "load_spec", lambda study: spec)
    monkeypatch.setattr(study_module.subprocess, "call", lambda *a, **k: pytest.fail("a sweep was launched"))
    with pytest.raises(study_module.ConfigError, match="sweep 'broken' does not compose.*nonexistent_key"):
        study_module.run_study("demo", "offline")


def test_the_paper_scale_refuses_before_any_sweep_without_its_data(tmp_path, monkeypatch, capsys):
    from reddiff_bench.cli.paper import main

    monkeypatch.setenv("REDDIFF_BENCH_DATA", str(tmp_path / "nodata"))
    monkeypatch.setattr(study_module.subprocess, "call", lambda *a, **k: pytest.fail("a sweep was launched"))
    assert main(["run", "--scale", "paper", "--study", "main"]) == 2
    err = capsys.readouterr().err
    assert "imagenet/val does not exist" in err and "dataset.root" in err


@pytest.mark.slow
def test_memory_profile_has_a_row_per_step_and_dps_holds_more_than_reddiff(tmp_path):
    """The same network (the FFHQ ADM architecture, random weights, 64x64), 8 steps each: DPS keeps
    the network's graph for its VJP, RED-Diff runs the network without one."""
    peaks = {}
    for solver in ("reddiff", "dps"):
        proc = cli("logger=none", "progress=false", "metrics.fid=false", f"solver={solver}", "solver.steps=8",
                   "model=adm_random", "model.checkpoint_name=adm_ffhq256",
                   "model.image_size=64", "dataset.size=64", "dataset.scale=1.0", "dataset.num_images=1",
                   "metrics.lpips=none", f"hydra.run.dir={tmp_path / solver}", timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        memory = pd.read_csv(tmp_path / solver / "memory.csv")
        assert list(memory["step"]) == list(range(8)) and (memory["batch"] == 0).all()
        assert (memory["bytes"] > 0).all() and set(memory["kind"]) == {"cpu_rss"}
        peaks[solver] = memory["bytes"].max()
    assert peaks["dps"] > peaks["reddiff"], peaks


def test_the_dashboard_is_built_from_the_studys_metrics_and_needs_a_login_to_save(monkeypatch, capsys):
    import wandb_workspaces.reports.v2 as wr

    from reddiff_bench.cli.dashboard import main
    from reddiff_bench.study.dashboard import build_report

    report = build_report("ablations", "reddiff_bench", "someone")
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    assert len(grids) == 6  # four tables, the trade-off, cost
    titles = [p.title for g in grids for p in g.panels]
    assert "PSNR by solver" in titles and "memory over solver steps (first batch)" in titles
    scatter = [p for g in grids for p in g.panels if isinstance(p, wr.ScatterPlot)]
    assert {p.x.name for p in scatter} == {"lpips", "prior_nll"}
    assert all(r.filters == "Group = 'ablations'" for g in grids for r in g.runsets)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["main"]) == 2
    assert "needs a login" in capsys.readouterr().err


@pytest.mark.slow
def test_runs_log_their_group_job_type_tags_and_metric_directions(tmp_path):
    from .helpers import wandb_records

    proc = cli(*[q for q in QUICK if q != "logger=none"], "solver=pinv", "dataset.num_images=2", "logger=wandb",
               "study.name=toy", "study.scale=offline", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = (tmp_path / "run").glob("wandb/offline-run-*/run-*.wandb")
    records = list(wandb_records(path))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_group == "toy" and run.job_type == "pinv"
    assert {"inpaint_box", "scale:offline"} <= set(run.tags)
    metrics = {r.metric.name: r.metric for r in records if r.WhichOneof("record_type") == "metric"}
    assert metrics["psnr"].summary.max and metrics["seconds"].summary.min


def test_collect_leaves_out_unfinished_runs_and_names_them(tmp_path, monkeypatch, capsys):
    """Regression: collect took every job with a metrics.csv, so a killed or still-running job of a
    long sweep (the Gaussian-mixture grid) put a subset of its problems into the study's tables."""
    monkeypatch.setattr(study_module, "OUTPUTS", tmp_path / "outputs")
    monkeypatch.setattr(study_module, "EXPERIMENTS", tmp_path / "experiments")
    frame = synthetic_rows()
    for solver, state in (("reddiff", "complete"), ("dps", "running"), ("pgdm", "failed")):
        job = tmp_path / "outputs" / "toy" / "offline" / "grid" / f"solver={solver}"
        job.mkdir(parents=True)
        frame[frame.solver == solver].to_csv(job / "metrics.csv", index=False)
        (job / "config.yaml").write_text(yaml.safe_dump({"solver": {"steps": 10}}))
        (job / "state.json").write_text(json.dumps({"state": state}))
    spec = {"scales": {"offline": {"sweeps": {"grid": []}}}}
    study_module.collect("toy", "offline", ["grid"], spec)
    rows = pd.read_csv(tmp_path / "experiments" / "toy" / "offline" / "rows.csv.gz")
    assert set(rows.solver) == {"reddiff"} and len(rows) == len(frame[frame.solver == "reddiff"])
    err = capsys.readouterr().err
    assert "left out 2 unfinished run(s)" in err
    assert "grid/solver=dps (running)" in err and "grid/solver=pgdm (failed)" in err


def test_the_tables_display_order_names_every_solver_of_conf_once():
    """studies.SOLVER_ORDER only orders the rows and columns of tables; the solvers themselves are
    the options of conf/solver/. The order cannot drift from them."""
    from reddiff_bench.study.bench import solver_names

    assert sorted(study_module.SOLVER_ORDER) == solver_names()


def test_the_main_study_shows_each_solver_paired_with_reddiff():
    """Issue 23: the committed main table gave RED-Diff 28.2 ± 1.4 and PiGDM 28.58 ± 1.4 dB on box
    inpainting (photos_unet16) and no way to tell them apart; its paired table does."""
    table = pd.read_csv(REPO / "experiments" / "main" / "offline" / "main_paired.csv")
    row = table[(table.model == "photos_unet16") & (table.task == "inpaint_box") & (table.solver == "pgdm")].iloc[0]
    assert row.images == 24 and row.psnr_p_mean > 0.05 and 0 <= row.psnr_win_mean <= 1  # not significant
    assert set(table.solver) == {"dps", "pgdm", "ddrm", "pinv"}  # every solver but the reference
    assert "paired differences to reddiff" in (REPO / "experiments" / "main" / "README.md").read_text()


@pytest.mark.slow  # two GMM runs: about 20 s
def test_the_posterior_projection_figure_shows_saved_samples_over_exact_posterior_samples(tmp_path, monkeypatch):
    """Issue 23: the Gaussian-mixture study had tables only. Its projection figure puts each solver's
    saved samples over exact posterior samples (drawn from the generator the run's reference metrics
    use) on the exact posterior's two leading principal directions."""
    from reddiff_bench.run.pipeline import run

    from .helpers import compose_config

    monkeypatch.setattr(study_module, "OUTPUTS", tmp_path / "outputs")
    for solver in ("ddim", "reddiff"):
        job = tmp_path / "outputs" / "toy" / "offline" / "quick" / f"solver={solver}"
        run(compose_config(["+experiment=gmm_posterior_quick", f"solver={solver}", "solver.steps=10", "dataset.dim=8",
                            "task.degradation.d_y=1", "task.noise.sigma_y=0.1", "dataset.num_problems=2",
                            "n_samples=40", "sw_projections=50", "logger=none", "progress=false"], run_dir=job), job)
    spec = {"name": "projection", "kind": "posterior_projection", "where": {"sweep": "quick"}, "problems": 2,
            "solvers": ["reddiff", "ddim", "dps"]}
    target = tmp_path / "figures"
    target.mkdir()
    study_module._collect_projection("toy", "offline", ["quick"], spec, target)
    with np.load(target / "projection.npz") as data:
        assert list(data["solvers"]) == ["reddiff", "ddim"] and list(data["problems"]) == ["d8_p000", "d8_p001"]
        exact, ddim = data["d8_p000__exact"].astype(np.float64), data["d8_p000__ddim"]
        assert exact.shape == ddim.shape == (40, 2)
    assert np.abs(exact.mean(0)).max() < 1e-5  # centred on the exact samples' mean
    cov = np.cov(exact.T)
    assert abs(cov[0, 1]) < 1e-4 * cov[0, 0] and cov[0, 0] >= cov[1, 1]  # their principal axes, largest first
    paths = study_module._figure(spec, pd.DataFrame({"status": ["ok"]}), pd.DataFrame(), target)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
