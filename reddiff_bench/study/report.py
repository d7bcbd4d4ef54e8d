"""Tables from results stores: one run, a sweep directory, or any tree of runs.

``python -m reddiff_bench report DIR [--format markdown|latex|csv]`` gathers every
``metrics.csv`` below DIR and prints the means per (task, solver). A Hydra sweep prints the same
table when it ends (``SweepReport`` callback). ``--pivot solver --value sw_to_posterior`` turns one
metric into a grid: one row per remaining group, one column per solver (the README's tables).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback

from ..metrics.registry import image_metrics
from ..run.store import read_rows, run_state
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
    of a complete run is kept, else the newest."""
    frames = []
    for path in paths:
        frame = read_rows(path)
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
    return rows.drop(columns="_mtime").reset_index(drop=True)


def summary(frame: pd.DataFrame, group: list[str] | None = None, columns: list[str] | None = None) -> Aggregate:
    """Means and 95% intervals per group (default: task, solver) over ok images, with the table
    engine of the studies; the counts of images that failed and of rows that only killed or
    failed runs hold follow the metrics. Runs of one solver name with different settings stay
    apart (their config hash joins the groups)."""
    group = [g for g in (group or GROUP) if g in frame.columns]
    if "config_hash" in frame and frame.groupby(group)["config_hash"].nunique().max() > 1:
        group.append("config_hash")
    ok = frame[frame["status"] == "ok"]
    metrics = [c for c in (columns or image_metrics()) if c in ok.columns and ok[c].notna().any()]
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


class SweepReport(Callback):
    """Hydra callback: print the table of a whole sweep when it ends (its own jobs only: a sweep
    directory can hold the jobs of earlier sweeps), list the jobs that were refused or failed
    (their ``error.txt``), and set the exit status: 2 when every job was refused (a preset
    without its data or checkpoint must not look like a success), 1 when a job failed."""

    def __init__(self) -> None:
        self.job_dirs: list[Path] = []

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        self.job_dirs.append(Path(config.hydra.runtime.output_dir))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        job_dirs = self.job_dirs or [p.parent for p in sweep_dir.glob("*/config.yaml")]
        errors = [d / "error.txt" for d in job_dirs if (d / "error.txt").is_file()]
        paths = [d / "metrics.csv" for d in job_dirs if (d / "metrics.csv").is_file()]
        if paths:
            frame = rows_of(paths)
            report = config.get("report", {}) or {}
            text = render(summary(frame, list(report.get("group") or GROUP), report.get("columns")),
                          intervals=bool(report.get("ci", False)))
            (sweep_dir / "table.md").write_text(text + "\n")
            print(f"\nSweep {sweep_dir}:\n{text}")
        failed = False
        if errors:
            by_message: dict[str, list[str]] = {}
            for path in errors:
                message = path.read_text().strip()
                failed |= message.startswith("failed:")
                by_message.setdefault(message.splitlines()[-1] if message.startswith("failed:") else message,
                                      []).append(path.parent.name)
            print(f"\n{len(errors)} job(s) of the sweep were refused or failed (error.txt in each):", file=sys.stderr)
            for message, jobs in by_message.items():
                print(f"  {', '.join(jobs)}: {message}", file=sys.stderr)
        if not paths and errors:
            raise SystemExit(2)
        if failed:
            raise SystemExit(1)
