"""Tables from results stores: one run, a sweep directory, or any tree of runs.

``python -m reddiff_bench report DIR [--format markdown|latex|csv]`` gathers every
``metrics.csv`` below DIR and prints the means per (task, solver). A Hydra sweep prints the same
table when it ends (``SweepReport`` callback). ``--pivot solver --value sw_to_posterior`` turns one
metric into a grid: one row per remaining group, one column per solver (the README's tables).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback

from ..errors import ConfigError
from ..metrics.registry import AUTOENCODER_COLUMNS, image_metrics
from ..run.identity import override_key
from ..run.launch import available_devices
from ..run.pipeline import missing_inputs
from ..run.store import dataset_ids, read_rows, run_state
from .tables import Aggregate, aggregate, pivot, to_latex, to_markdown

GROUP = ["task", "solver"]
INCOMPLETE = ("running", "failed", "interrupted")  # runs that did not finish (a killed run stays "running")


def rows_below(root: str | Path) -> pd.DataFrame:
    """Every row below ``root``, each (config_hash, image_id) once (see ``rows_of``)."""
    paths = sorted(Path(root).rglob("metrics.csv"))
    if not paths:
        raise FileNotFoundError(f"no metrics.csv below {root}")
    return rows_of(paths)


def rows_of(paths: list[Path]) -> pd.DataFrame:
    """The rows of ``paths`` (metrics.csv files), with ``run_dir`` and ``run_state`` (the state of
    the run that wrote them: complete, running, failed). An image solved by several runs of the
    same configuration (a killed run and its re-run in another directory) counts once: the row
    of a complete run is kept, else the newest. Rows of images that a run's dataset no longer holds
    (``dataset_ids.json``) are left out, as the run's summary leaves them out, and named in
    ``rows.attrs["outside_dataset"]``."""
    frames, outside = [], {}
    for path in paths:
        frame = read_rows(path)
        ids = dataset_ids(path.parent)
        if ids is not None and "image_id" in frame:  # rows of images the run's dataset no longer holds
            gone = ~frame["image_id"].isin(ids)
            if gone.any():
                outside[str(path.parent)] = sorted(frame.loc[gone, "image_id"])
                frame = frame[~gone]
        frame["run_dir"] = str(path.parent)
        frame["run_state"] = run_state(path.parent)
        frame["_mtime"] = path.stat().st_mtime
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    if {"config_hash", "image_id"} <= set(rows.columns):
        rows["_complete"] = rows["run_state"] == "complete"
        rows = rows.sort_values(["_complete", "_mtime"], kind="stable")
        rows = rows.drop_duplicates(["config_hash", "image_id"], keep="last").sort_index()
        rows = rows.drop(columns="_complete")
    rows = rows.drop(columns="_mtime").reset_index(drop=True)
    rows.attrs["outside_dataset"] = outside  # run directory -> ids left out
    return rows


def summary(frame: pd.DataFrame, group: list[str] | None = None, columns: list[str] | None = None) -> Aggregate:
    """Means and 95% intervals per group (default: task, solver) over ok images, with the table
    engine of the studies; the counts of images that failed and of rows that only killed or
    failed runs hold follow the metrics. Runs of one solver name with different settings stay
    apart (their config hash joins the groups)."""
    group = [g for g in (group or GROUP) if g in frame.columns]
    if "config_hash" in frame and frame.groupby(group)["config_hash"].nunique().max() > 1:
        group.append("config_hash")
    ok = frame[frame["status"] == "ok"]
    metrics = [c for c in (columns or image_metrics()) if c in ok.columns and ok[c].notna().any()
               and not (columns is None and c in AUTOENCODER_COLUMNS and not ok[c].fillna(0).any())]
    agg = aggregate(frame, group, metrics)
    counts = {}
    failed = frame[frame["status"] != "ok"].groupby(group).size()
    if len(failed):
        counts["failed"] = failed
    if "run_state" in frame.columns:  # rows of runs that were killed or failed: say so
        incomplete = ok[ok["run_state"].isin(INCOMPLETE)].groupby(group).size()
        if len(incomplete):
            counts["from_incomplete_runs"] = incomplete
    agg.counts = counts
    return agg


def pivot_on(agg: Aggregate, level: str, value: str) -> Aggregate:
    """One metric of a :func:`summary` as a grid: a column per value of the group ``level``."""
    if level not in agg.groups or value not in agg.metrics:
        raise ValueError(f"cannot pivot on {level!r} with value {value!r}: the table has groups {agg.groups} and "
                         f"metrics {agg.metrics} (add {level!r} to --group; the value must be a metric of the rows)")
    return pivot(agg, level, value)


def render(agg: Aggregate, fmt: str = "markdown", intervals: bool = True) -> str:
    """The table as markdown, booktabs LaTeX or CSV (the numbers)."""
    if fmt == "latex":
        return to_latex(agg)
    if fmt == "csv":
        return agg.frame().to_csv(index=False, float_format="%.6g")
    return to_markdown(agg, intervals=intervals)


SWEEP_MANIFEST = "REDDIFF_BENCH_SWEEP_JOBS"  # the file where this sweep's jobs write their directories


class SweepReport(Callback):
    """Hydra callback around a sweep. Before any job: the sweep's data and checkpoint, and the
    gpus launcher's devices, are checked once, everything missing is named at once, and the sweep
    is refused (status 2). Each job, in whatever process the launcher runs it, appends its
    directory to this sweep's manifest (a sweep folder can hold the jobs of earlier sweeps). At the
    end: the table of exactly this sweep's jobs, the jobs that were refused or failed (their
    ``error.txt``), and the exit status: 1 when a job failed, 2 when a job was refused, 0 when
    every job finished (``report.allow_errors=true``: 0 whenever the table has rows)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        problems = sweep_problems(config)
        if problems:
            print("error: the sweep cannot run, no job was started:\n  " + "\n  ".join(problems), file=sys.stderr)
            raise SystemExit(2)
        folder = Path(config.hydra.sweep.dir) / ".sweeps"
        folder.mkdir(parents=True, exist_ok=True)
        manifest = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jobs"
        manifest.touch()
        os.environ[SWEEP_MANIFEST] = str(manifest)  # the launcher's worker processes inherit it

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        manifest = os.environ.get(SWEEP_MANIFEST)
        if manifest:
            with open(manifest, "a") as f:  # one short line per append: atomic under O_APPEND
                f.write(f"{config.hydra.runtime.output_dir}\n")

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        manifest = os.environ.pop(SWEEP_MANIFEST, None)
        job_dirs = list(dict.fromkeys(Path(line) for line in Path(manifest).read_text().splitlines())) if manifest \
            else []
        errors = [d / "error.txt" for d in job_dirs if (d / "error.txt").is_file()]
        paths = [d / "metrics.csv" for d in job_dirs
                 if (d / "metrics.csv").is_file() and not (d / "error.txt").is_file()]
        report = config.get("report", {}) or {}
        if paths:
            frame = rows_of(paths)
            text = render(summary(frame, list(report.get("group") or GROUP), report.get("columns")),
                          intervals=bool(report.get("ci", False)))
            (sweep_dir / "table.md").write_text(text + "\n")
            print(f"\nSweep {sweep_dir} ({len(paths)} of {len(job_dirs)} jobs):\n{text}")
        kinds = set()
        if errors:
            by_message: dict[str, list[str]] = {}
            for path in errors:
                message = path.read_text().strip()
                kinds.add(message.split(":", 1)[0])
                by_message.setdefault(message.splitlines()[-1] if message.startswith("failed:") else message,
                                      []).append(path.parent.name)
            print(f"\n{len(errors)} of {len(job_dirs)} job(s) of the sweep were refused or failed (error.txt in each):",
                  file=sys.stderr)
            for message, jobs in by_message.items():
                print(f"  {', '.join(jobs)}: {message}", file=sys.stderr)
        if errors and not (paths and report.get("allow_errors", False)):
            raise SystemExit(1 if "failed" in kinds else 2)


def sweep_problems(config: Any) -> list[str]:
    """What keeps every job of a sweep from running, found before any job: no CUDA device for the
    gpus launcher, and (unless the sweep varies them) missing data or checkpoint."""
    problems = []
    choices = dict(config.hydra.runtime.choices)
    if choices.get("hydra/launcher") == "gpus":
        try:
            available_devices(list(config.launch.devices) if config.launch.get("devices") else None)
        except ConfigError as err:
            problems.append(str(err))
    swept = {override_key(o).split(".")[0] for o in config.hydra.overrides.task if "," in o or "glob(" in o}
    swept |= {override_key(str(k)).split(".")[0] for k in (config.hydra.sweeper.get("params") or {})}
    if not swept & {"dataset", "model", "paths"}:
        problems += missing_inputs(config)
    return problems
