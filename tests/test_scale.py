"""Sweeps at scale: resume after a crash, run-directory ownership, shared caches under
concurrency, the GPU launcher's slots, one run over several processes (torchrun), SLURM through
submitit; and each defect observed on the runner before it could resume (issue 14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from reddiff_bench.run.store import PROVENANCE_COLUMNS

from .conftest import REPO, SMALL_GMM

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
QUICK = SMALL_GMM + ["logger=none", "progress=false", "metrics.fid=false"]


def cli(*args, timeout=300, module=("-m", "reddiff_bench")) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *module, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reddiff_bench", *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def run_here(run_dir: Path, *overrides: str):
    """One run in this process, as ``python -m reddiff_bench`` would make it (no subprocess needed)."""
    from reddiff_bench.run.pipeline import run

    from .helpers import compose_config

    return run(compose_config(list(overrides), run_dir=run_dir), run_dir)


def rows_on_disk(path: Path) -> int:
    try:
        return len(pd.read_csv(path))
    except (OSError, pd.errors.EmptyDataError):
        return 0


def kill_when(proc: subprocess.Popen, path: Path, rows: int, timeout: float = 120) -> None:
    """kill -9 the run (its whole process group) once ``path`` holds ``rows`` rows."""
    deadline = time.time() + timeout
    while rows_on_disk(path) < rows:
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1][-2000:]}"
        assert time.time() < deadline, "no rows appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_for_dir(parent: Path, proc: subprocess.Popen, contains: str = "", timeout: float = 120) -> Path:
    """The run directory a started command creates below ``parent`` (named after its overrides)."""
    deadline = time.time() + timeout
    while True:
        found = [d for d in parent.glob("*") if d.is_dir() and contains in d.name] if parent.is_dir() else []
        if found:
            return found[0]
        assert proc.poll() is None and time.time() < deadline, "the run created no directory"
        time.sleep(0.05)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    drop = [c for c in [*PROVENANCE_COLUMNS, "run"] if c in frame.columns]  # run: the directory's name
    return frame.drop(columns=drop).set_index("image_id")


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = comparable(a), comparable(b)
    assert not a.index.duplicated().any() and not b.index.duplicated().any()
    assert list(a.index) == list(b.index)
    assert list(a.columns) == list(b.columns)
    for column in a.columns:
        if pd.api.types.is_numeric_dtype(a[column]):
            assert a[column].to_numpy() == pytest.approx(b[column].to_numpy(), rel=1e-6, nan_ok=True), column
        else:
            assert list(a[column]) == list(b[column]), column


SLOW_RUN = QUICK + ["solver=reddiff", "solver.steps=150", "dataset.num_images=6", "batch_size=1"]


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_rows_of_an_uninterrupted_one(tmp_path):
    clean = cli(*SLOW_RUN, f"paths.output_dir={tmp_path}/clean")
    assert clean.returncode == 0, clean.stderr[-2000:]
    proc = start(*SLOW_RUN, f"paths.output_dir={tmp_path}/killed")
    run_dir = wait_for_dir(tmp_path / "killed" / "default" / "runs", proc)
    kill_when(proc, run_dir / "metrics.csv", 2)
    killed = rows_on_disk(run_dir / "metrics.csv")
    assert 2 <= killed < 6
    assert json.loads((run_dir / "state.json").read_text())["state"] == "running"  # killed: never marked complete
    again = cli(*SLOW_RUN, f"paths.output_dir={tmp_path}/killed")  # the same command finds its directory
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{killed} of 6 images already have rows" in again.stdout + again.stderr
    assert json.loads((run_dir / "state.json").read_text())["state"] == "complete"
    expected = pd.read_csv(next((tmp_path / "clean").rglob("metrics.csv")))
    assert_same_rows(pd.read_csv(run_dir / "metrics.csv"), expected)
    assert len(list((run_dir / "outputs").glob("*.png"))) == 6
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_images"] == 6 and summary["psnr"] == pytest.approx(expected["psnr"].mean())


@pytest.mark.slow
def test_a_sweep_killed_in_its_second_job_resumes_it_and_skips_the_first(tmp_path):
    sweep = ["-m", "solver=ddrm,reddiff"] + [a for a in SLOW_RUN if not a.startswith("solver=")]
    clean = cli(*sweep, f"paths.output_dir={tmp_path}/clean")
    assert clean.returncode == 0, clean.stderr[-2000:]
    jobs = tmp_path / "killed" / "default" / "multirun"
    proc = start(*sweep, f"paths.output_dir={tmp_path}/killed")
    second = wait_for_dir(jobs, proc, "solver=reddiff")
    kill_when(proc, second / "metrics.csv", 1)
    (first,) = [d for d in jobs.iterdir() if "solver=ddrm" in d.name]
    first_rows = (first / "metrics.csv").read_text()
    again = cli(*sweep, f"paths.output_dir={tmp_path}/killed")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "6 of 6 images already have rows" in again.stdout + again.stderr  # the finished job solved nothing again
    assert (first / "metrics.csv").read_text() == first_rows
    for job in (first, second):
        expected = pd.read_csv(tmp_path / "clean" / "default" / "multirun" / job.name / "metrics.csv")
        assert_same_rows(pd.read_csv(job / "metrics.csv"), expected)
    assert "| reddiff" in again.stdout and "| ddrm" in again.stdout


def test_a_changed_result_relevant_key_is_refused_naming_it(tmp_path):
    from reddiff_bench.errors import ConfigError

    base = QUICK + ["solver=pinv", "dataset.num_images=2"]
    run_here(tmp_path / "run", *base)
    with pytest.raises(ConfigError, match=r"task\.noise\.sigma_y: 0\.05 in the directory, 0\.1 now"):
        run_here(tmp_path / "run", *base, "task.noise.sigma_y=0.1")
    assert len(pd.read_csv(tmp_path / "run" / "metrics.csv")) == 2  # rows never mixed


@pytest.mark.slow
def test_a_second_run_into_a_locked_directory_is_refused_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    long_run = SLOW_RUN[:-2] + ["dataset.num_images=60", "batch_size=1"]  # busy for a minute unless killed
    holder = start(*long_run, f"hydra.run.dir={run_dir}")
    try:
        deadline = time.time() + 60
        while not (run_dir / "owner.json").is_file() or not (run_dir / "state.json").is_file():
            assert time.time() < deadline and holder.poll() is None
            time.sleep(0.05)
        second = cli(*long_run, f"hydra.run.dir={run_dir}")
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"pid {holder.pid}" in second.stderr and "in use by another run" in second.stderr
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


def test_two_writers_of_one_table_never_break_each_other_or_leave_half_a_file(tmp_path):
    """Regression: the old store wrote every table through one fixed name (.metrics.csv.tmp), so two
    writers renamed each other's half-written file or crashed. Two threads now rewrite the same
    table 200 times each: no error, the table is always one writer's whole text, nothing left
    behind."""
    from concurrent.futures import ThreadPoolExecutor

    from reddiff_bench.files import atomic_write_text

    target = tmp_path / "metrics.csv"
    texts = ["a,b\n" + "1,2\n" * 5000, "a,b\n" + "3,4\n" * 7000]

    def write(text: str) -> None:
        for _ in range(200):
            atomic_write_text(target, text)
            assert target.read_text() in texts

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(write, t) for t in texts]:
            future.result()
    assert target.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_re_running_a_finished_run_solves_nothing_and_keeps_every_row(tmp_path, caplog):
    """Regression: a re-run of a finished run used to start over from image 0, and a kill after 2
    rows left 2 rows where 16 had been (with the old summary claiming 16)."""
    args = QUICK + ["solver=reddiff", "solver.steps=20", "dataset.num_images=5"]
    run_here(tmp_path / "run", *args)
    before = pd.read_csv(tmp_path / "run" / "metrics.csv")
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "outputs").iterdir()}
    caplog.set_level("INFO")
    run_here(tmp_path / "run", *args)
    assert "5 of 5 images already have rows" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "outputs").iterdir()} == stamps  # none solved
    assert_same_rows(pd.read_csv(tmp_path / "run" / "metrics.csv"), before)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["num_images"] == 5


@pytest.mark.slow
def test_report_counts_each_image_once_over_a_killed_run_and_its_complete_rerun(tmp_path):
    """Regression: report over a killed run and its re-run (another directory) counted the images
    twice. Each (config hash, image id) counts once, from the complete run, and the table says
    that an incomplete run lies below."""
    from reddiff_bench.study.report import rows_below, summary

    args = SLOW_RUN[:-2] + ["dataset.num_images=4", "batch_size=1"]
    complete = cli(*args, f"hydra.run.dir={tmp_path}/b_rerun")
    assert complete.returncode == 0
    proc = start(*args, f"hydra.run.dir={tmp_path}/a_killed")
    kill_when(proc, tmp_path / "a_killed" / "metrics.csv", 2)
    frame = rows_below(tmp_path)
    assert len(frame) == 4 and not frame.duplicated(["config_hash", "image_id"]).any()
    assert set(frame["run_state"]) == {"complete"}  # the complete run's rows are the ones kept
    assert int(summary(frame).count.iloc[0]) == 4
    from reddiff_bench.cli.report import main

    assert main([str(tmp_path)]) == 0


@pytest.mark.slow
def test_report_marks_images_that_only_an_incomplete_run_has(tmp_path):
    from reddiff_bench.study.report import rows_below, summary

    proc = start(*SLOW_RUN, f"hydra.run.dir={tmp_path}/killed")
    kill_when(proc, tmp_path / "killed" / "metrics.csv", 2)
    table = summary(rows_below(tmp_path))
    assert int(table.counts["from_incomplete_runs"].iloc[0]) == int(table.count.iloc[0]) >= 2


@pytest.mark.slow
def test_three_processes_racing_to_build_a_cache_build_it_once(tmp_path):
    script = f"""
import sys, time
from pathlib import Path
from reddiff_bench.files import publish
target, log = Path({str(tmp_path / 'cache.bin')!r}), Path({str(tmp_path / 'builds.log')!r})
def build(tmp):
    with open(log, "a") as f:
        f.write("built\\n")
    time.sleep(1.0)
    tmp.write_bytes(b"x" * 100000)
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # start together
path = publish(target, build)
assert path.read_bytes() == b"x" * 100000, "a half-written cache was read"
print("ok")
"""
    go = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", script, go], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 and out.strip() == "ok" for p, (out, _) in zip(procs, outs)), outs
    assert (tmp_path / "builds.log").read_text().count("built") == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary file left behind


def test_a_corrupt_or_unwritable_cache_is_refused_naming_the_file_and_the_fix(tmp_path):
    from reddiff_bench.errors import ConfigError
    from reddiff_bench.priors.gmm import _fit_key, fit_photo_mixture

    params = dict(size=16, n_components=2, n_crops=300, scale=0.5, seed=0, reg_covar=1e-4, max_iter=3)
    from reddiff_bench.data.photos import TRAIN_PHOTOS

    key = _fit_key(**params, photos=list(TRAIN_PHOTOS), version=1)
    (tmp_path / f"gmm_photos_{key}.pt").write_bytes(b"truncated")
    with pytest.raises(ConfigError, match=f"gmm_photos_{key}.pt cannot be read.*Delete it") as refused:
        fit_photo_mixture(**params, cache_dir=tmp_path)
    assert "weights_only" not in str(refused.value)  # regression (issue 22): torch's unsafe hint was repeated
    import torch

    torch.save({"weights": object()}, tmp_path / f"gmm_photos_{key}.pt")  # a pickle torch refuses to load safely
    with pytest.raises(ConfigError, match="cannot be read") as refused:
        fit_photo_mixture(**params, cache_dir=tmp_path)
    assert "weights_only" not in str(refused.value)
    blocker = tmp_path / "a_file"  # a cache folder below a file cannot be made, even by root
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="not writable.*paths.cache_dir"):
        fit_photo_mixture(**params, cache_dir=blocker / "cache")


def test_an_unwritable_cache_folder_is_refused_before_any_work(tmp_path):
    from reddiff_bench.errors import ConfigError
    from reddiff_bench.files import ensure_writable_dir

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="not writable.*paths.cache_dir"):
        ensure_writable_dir(blocker / "cache", "the cache folder", "paths.cache_dir")


def test_replaying_measurements_of_another_task_or_noise_is_refused(tmp_path):
    """Regression: measurements_from replayed a y made under another task or sigma_y without a
    word, labelling the rows with the new task. Saved measurements record their task."""
    from reddiff_bench.errors import ConfigError

    base = QUICK + ["solver=pinv", "dataset.num_images=2"]
    first = tmp_path / "runs" / "solver=pinv,task=sr4"  # a folder named as the project names them
    run_here(first, *base, "task=sr4")
    replay = f"measurements_from='{first}/measurements'"  # quoted as the README shows (issue 22 row 6)
    with pytest.raises(ConfigError, match="made by another task"):
        run_here(tmp_path / "replay1", *base, "task=inpaint_box", replay)
    with pytest.raises(ConfigError, match="noise.sigma_y: 0.05 when saved, 0.2 in this run"):
        run_here(tmp_path / "replay2", *base, "task=sr4", "task.noise.sigma_y=0.2", replay)
    run_here(tmp_path / "same", *base, "task=sr4", replay)
    same, made = pd.read_csv(tmp_path / "same" / "metrics.csv"), pd.read_csv(first / "metrics.csv")
    assert list(same["measurement_hash"]) == list(made["measurement_hash"])  # the very same y
    assert same["psnr"].tolist() == pytest.approx(made["psnr"].tolist())
    next((first / "measurements").glob("*.pt")).write_bytes(b"cut short")  # a half-copied folder
    with pytest.raises(ConfigError, match=r"saved measurement .* cannot be read .* Re-create the measurements"):
        run_here(tmp_path / "broken", *base, "task=sr4", replay)


def test_photo_crops_have_distinct_ids_and_say_when_they_cannot():
    """Regression: dataset.num_images=200 gave 2 repeated crops (counted twice, useless as a
    resume key)."""
    from reddiff_bench.data import PhotoCrops
    from reddiff_bench.errors import ConfigError

    dataset = PhotoCrops(size=16, num_images=200)
    ids = [dataset.image_id(i) for i in range(len(dataset))]
    assert len(ids) == 200 == len(set(ids))
    # draws without a repeat are kept as they were (the demo's 8 crops did not change)
    import torch

    from reddiff_bench.data.photos import crop_positions, photo_tensor

    small = PhotoCrops(size=16, num_images=8)
    generator = torch.Generator().manual_seed(0)
    raw = [(name, *rc) for name in ("chelsea", "coffee") for rc in crop_positions(
        *photo_tensor(name, 0.5).shape[1:], 16, 4, generator)]
    assert small.items == raw
    with pytest.raises(ConfigError, match="distinct 64x64 crops"):
        PhotoCrops(size=64, num_images=100000, scale=0.1)


BAD_VALUES = [
    ("solver.steps=0", "solver.steps must be an integer >= 1"),
    ("solver.steps=-5", "solver.steps must be an integer >= 1"),
    ("solver.steps=2000", "solver.steps must be an integer in 1..1000"),
    ("batch_size=0", "batch_size must be an integer >= 1"),
    ("batch_size=-1", "batch_size must be an integer >= 1"),
    ("dataset.num_images=0", "dataset.num_images must be an integer >= 1"),
    ("n_samples=0", "n_samples must be an integer >= 1"),
    ("optimizer.lr=nan", "optimizer"),
    ("optimizer.lr=0", "optimizer.lr must be a finite number > 0"),
    ("solver.lam=-1", "solver.lam must be a finite number >= 0"),
]


@pytest.mark.parametrize("override,message", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_refused_before_any_work_naming_the_key(tmp_path, override, message):
    from reddiff_bench.errors import ConfigError
    from reddiff_bench.run.pipeline import run

    from .helpers import compose_config

    cfg = compose_config(QUICK + ["solver=reddiff", "dataset.num_images=2", override], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.slow
def test_a_refused_job_in_a_sweep_leaves_its_error_and_the_sweep_goes_on(tmp_path):
    proc = cli("-m", *QUICK, "solver=reddiff", "dataset.num_images=2", "solver.steps=0,20",
               f"paths.output_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]  # the table is made, the status says a job was refused
    assert "Traceback" not in proc.stderr
    errors = list(tmp_path.rglob("error.txt"))
    assert len(errors) == 1 and "solver.steps must be an integer >= 1" in errors[0].read_text()
    assert "refused or failed" in proc.stderr
    assert (tmp_path / "default" / "multirun" / "table.md").is_file()  # the good job's table


def test_skip_unreadable_is_honoured_when_the_first_image_is_unreadable(tmp_path):
    """Regression: with dataset.skip_unreadable=true an unreadable FIRST image still stopped the run,
    telling the user to set the flag that was already set."""
    from PIL import Image

    root = tmp_path / "images"
    root.mkdir()
    (root / "a_broken.png").write_bytes(b"not an image")
    for name in ("b", "c"):
        Image.new("RGB", (20, 20), (90, 40, 200)).save(root / f"{name}.png")
    run_here(tmp_path / "run", *QUICK, "solver=pinv", "dataset=image_folder", f"dataset.root={root}",
             "dataset.size=16", "dataset.skip_unreadable=true")
    rows = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(rows["status"]) == ["unreadable", "ok", "ok"] and rows["image_id"].is_unique


@pytest.mark.slow
def test_gpu_launcher_gives_each_concurrent_job_its_own_slot(tmp_path):
    """hydra/launcher=gpus with 2 (fake, CPU) slots and 4 jobs: every job finishes, records its
    slot, and no two jobs that ran at the same time shared one."""
    proc = cli("-m", *QUICK, "solver=reddiff", "solver.steps=60", "dataset.num_images=3", "seed=0,1,2,3",
               "hydra/launcher=gpus", "launch.devices=[0,1]", f"paths.output_dir={tmp_path}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((tmp_path / "default" / "multirun").glob("*seed=*"))
    assert len(jobs) == 4
    spans = []
    for job in jobs:
        rows = pd.read_csv(job / "metrics.csv")
        state = json.loads((job / "state.json").read_text())
        assert state["state"] == "complete" and rows["gpu_slot"].nunique() == 1
        spans.append((int(rows["gpu_slot"].iloc[0]), state["started"], state["finished"]))
    assert {slot for slot, _, _ in spans} <= {0, 1}
    for i, (slot_a, start_a, end_a) in enumerate(spans):
        for slot_b, start_b, end_b in spans[i + 1 :]:
            if slot_a == slot_b:
                assert end_a <= start_b or end_b <= start_a, spans


@pytest.mark.slow
def test_torchrun_over_two_processes_gives_the_rows_of_one(tmp_path):
    """torchrun with 2 CPU processes (gloo): the images are shared out, rank 0 merges the rows,
    and they equal a single process's rows; each row records its rank."""
    # batch_size=1: images solved alone give the same float32 sums whichever rank solves them
    # (across batch sizes they agree to ~1e-5, the float32 reduction order)
    args = QUICK + ["solver=reddiff", "solver.steps=30", "dataset.num_images=5", "batch_size=1"]
    single = cli(*args, f"hydra.run.dir={tmp_path}/single")
    assert single.returncode == 0, single.stderr[-2000:]
    multi = cli("--standalone", "--nproc_per_node=2", "-m", "reddiff_bench", *args, f"hydra.run.dir={tmp_path}/multi",
                module=("-m", "torch.distributed.run"), timeout=600)
    assert multi.returncode == 0, multi.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "multi" / "metrics.csv")
    assert sorted(rows["rank"].unique()) == [0, 1] and set(rows["world_size"]) == {2}
    assert_same_rows(rows, pd.read_csv(tmp_path / "single" / "metrics.csv"))
    assert not (tmp_path / "multi" / "rows").exists()  # rank files merged
    assert json.loads((tmp_path / "multi" / "state.json").read_text())["state"] == "complete"


def test_the_slurm_preset_composes_with_requeues_allowed():
    """The preset's settings only (no SLURM here): one GPU per job, submitit may requeue a job that
    times out (``max_num_timeout``); a requeued job resumes like any re-run command (the kill and
    resume tests above)."""
    from .helpers import compose_config

    cfg = compose_config(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.max_num_timeout >= 1 and launcher.array_parallelism >= 1
    assert launcher.partition == "gpu" and launcher.timeout_min > 0 and launcher.mem_gb > 0
    assert launcher.name == cfg.experiment_name == "default"  # regression (issue 22): the job was named __main__


@pytest.mark.slow
def test_a_two_job_sweep_runs_through_submitits_local_executor(tmp_path):
    proc = cli("-m", *QUICK, "solver=ddim,reddiff", "solver.steps=20", "dataset.num_images=2",
               "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", f"paths.output_dir={tmp_path}",
               timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = (tmp_path / "default" / "multirun" / "table.md").read_text()
    assert "| ddim" in tables and "| reddiff" in tables


@pytest.mark.slow
def test_estimate_counts_each_solvers_calls_and_sums_the_hours(capsys):
    from reddiff_bench.cli.estimate import main

    assert main(["+experiment=imagenet_inpaint", "--seconds-per-nfe", "0.01", "--seconds-per-vjp", "0.02"]) == 0
    out = capsys.readouterr().out
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in out.splitlines()
             if line.startswith("| solver=")}
    assert lines["solver=reddiff"][:3] == ["1000", "1000", "0"]       # images, NFE, VJP per image
    assert lines["solver=dps"][:3] == ["1000", "1000", "1000"]
    assert lines["solver=pgdm"][:3] == ["1000", "1000", "1000"]
    assert lines["solver=ddrm"][:3] == ["1000", "1000", "0"]  # sample_batch.sh runs DDRM for 1000 steps too
    # (10 + 30 + 30 + 10) s per image x 1000 images
    assert "total: 22.22 device-hours over 4 job(s)" in out
    assert main(["+experiment=demo", "task=sr4", "solver=pgdm", "hydra.mode=RUN", "--seconds-per-nfe", "1",
                 "--seconds-per-vjp", "1"]) == 0
    assert "| 101 |" in capsys.readouterr().out.replace("   ", " ").replace("  ", " ")  # SR starts at t = 500


@pytest.mark.slow
@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_stops_a_run_in_one_line_and_the_same_command_resumes(tmp_path, sig, status):
    """Regression (issue 22): Ctrl-C printed a traceback, exited 1 and left state 'failed'; SLURM's
    SIGTERM did the same. Now: one line, 128 + the signal, state 'interrupted', rows kept."""
    args = [*SLOW_RUN, f"hydra.run.dir={tmp_path}/run"]
    proc = start(*args)
    deadline = time.time() + 120
    while rows_on_disk(tmp_path / "run" / "metrics.csv") < 2:
        assert proc.poll() is None and time.time() < deadline, "no rows appeared"
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-2000:]
    assert "Traceback" not in err and f"interrupted by {sig.name}" in err
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["state"] == "interrupted" and state["signal"] == sig.name
    kept = rows_on_disk(tmp_path / "run" / "metrics.csv")
    again = cli(*args)
    assert again.returncode == 0 and f"{kept} of 6 images already have rows" in again.stdout + again.stderr
    assert json.loads((tmp_path / "run" / "state.json").read_text())["state"] == "complete"


@pytest.mark.slow
def test_gpu_slots_are_keyed_by_device_so_disjoint_sweeps_never_collide(tmp_path):
    """Regression (issue 22): two gpus sweeps of one experiment on launch.devices=[0,1] and [2,3]
    shared the slot folder; slot locks were numbered by position, so the second was refused."""
    hold = ("import sys, time; from reddiff_bench.run.launch import claim_slot; "
            "print(claim_slot(sys.argv[1], [int(d) for d in sys.argv[2].split(',')]), flush=True); time.sleep(30)")
    first = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path), "0,1"], cwd=REPO, env=ENV,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "(0, 0)"
        second = subprocess.run([sys.executable, "-c", hold.replace("time.sleep(30)", "None"), str(tmp_path), "2,3"],
                                cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0 and second.stdout.strip() == "(0, 2)", second.stderr[-2000:]
        same = subprocess.run([sys.executable, "-c", hold.replace("time.sleep(30)", "None"), str(tmp_path), "0"],
                              cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
        assert same.returncode != 0 and "GPU slots" in same.stderr  # device 0 is held by the first
    finally:
        first.kill()
        first.wait()


def test_rank_files_of_a_killed_torchrun_run_are_merged_and_removed_by_a_single_process_resume(tmp_path):
    """Regression (issue 22): a torchrun run killed, then resumed with one process, left its
    rows/rank*.csv behind."""
    args = [*QUICK, "solver=pinv", "dataset.num_images=3"]
    run_here(tmp_path / "clean", *args)
    run_dir = tmp_path / "run"
    run_here(run_dir, *args)
    (run_dir / "rows").mkdir()
    rows = pd.read_csv(run_dir / "metrics.csv", dtype={"image_id": str})
    rows.iloc[:2].to_csv(run_dir / "rows" / "rank1.csv", index=False)  # what a killed rank had written
    (run_dir / "metrics.csv").unlink()
    run_here(run_dir, *args)
    assert not (run_dir / "rows").exists()
    assert_same_rows(pd.read_csv(run_dir / "metrics.csv"), pd.read_csv(tmp_path / "clean" / "metrics.csv"))
