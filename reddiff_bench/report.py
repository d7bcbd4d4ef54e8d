"""Tables from results stores: one run, a sweep directory, or any tree of runs.

``python -m reddiff_bench.report DIR [--format markdown|latex|csv]`` gathers every
``metrics.csv`` below DIR and prints the means per (task, solver). A Hydra sweep prints the same
table when it ends (``SweepReport`` callback). ``--pivot solver --value sw_to_posterior`` turns one
metric into a grid: one row per remaining group, one column per solver (the README's tables).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback

from .store import run_state
from .tables import mean_and_ci95

# Columns shown, in order, when present; means over images with status ok.
TABLE_COLUMNS = ["psnr", "ssim", "lpips", "top1_correct", "lpips_diversity", "mse", "sw_to_posterior", "sw1_to_posterior", "dist_to_nearest_mode", "dist_to_post_mean",
                 "mse_to_post_mean", "psnr_post_mean", "mse_post_mean", "data_consistency", "sample_std",
                 "nfe", "vjp", "seconds", "peak_mem_mb"]
GROUP = ["task", "solver"]
INCOMPLETE = ("running", "failed")  # states of runs that did not finish (a killed run stays "running")


def collect(root: str | Path) -> pd.DataFrame:
    """Every row below ``root``, each (config_hash, image_id) once (see ``collect_paths``)."""
    paths = sorted(Path(root).rglob("metrics.csv"))
    if not paths:
        raise FileNotFoundError(f"no metrics.csv below {root}")
    return collect_paths(paths)


def collect_paths(paths: list[Path]) -> pd.DataFrame:
    """The rows of ``paths`` (metrics.csv files), with ``run_dir`` and ``run_state`` (the state of
    the run that wrote them: complete, running, failed). An image solved by several runs of the
    same configuration (a killed run and its re-run in another directory) counts once: the row
    of a complete run is kept, else the newest."""
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
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


def summary_table(frame: pd.DataFrame, group: list[str] | None = None, ci: bool = False,
                  columns: list[str] | None = None) -> pd.DataFrame:
    """Means per group (default: task, solver) over ok images, with image counts; with ``ci``,
    each cell reads ``mean +- 1.96 std / sqrt(n)``."""
    group = [g for g in (group or GROUP) if g in frame.columns]
    if "config_hash" in frame and frame.groupby(group)["config_hash"].nunique().max() > 1:
        group.append("config_hash")  # the same solver name with different settings: keep them apart
    ok = frame[frame["status"] == "ok"]
    columns = [c for c in (columns or TABLE_COLUMNS) if c in ok.columns and ok[c].notna().any()]
    table, half = mean_and_ci95(ok.groupby(group)[columns])
    if ci:
        table = table.apply(lambda col: [f"{m:.4g} ± {h:.2g}" for m, h in zip(col, half[col.name])])
    table.insert(0, "images", ok.groupby(group).size())
    failed = frame[frame["status"] != "ok"].groupby(group).size()
    if len(failed):
        table["failed"] = failed.reindex(table.index).fillna(0).astype(int)
    if "run_state" in frame.columns:  # rows of runs that were killed or failed: say so
        incomplete = ok[ok["run_state"].isin(INCOMPLETE)].groupby(group).size()
        if len(incomplete):
            table["from_incomplete_runs"] = incomplete.reindex(table.index).fillna(0).astype(int)
    return table.reset_index()


def pivot_table(table: pd.DataFrame, pivot: str, value: str, order: list | None = None) -> pd.DataFrame:
    """One metric of a :func:`summary_table` as a grid: a column per value of ``pivot`` (in
    ``order`` when given, e.g. as they first appear in the rows), a row per combination of the
    other group columns."""
    if pivot not in table.columns or value not in table.columns:
        present = [c for c in table.columns if c not in ("images", "failed")]
        raise ValueError(f"cannot pivot on {pivot!r} with value {value!r}: the table has {present} "
                         f"(add {pivot!r} to --group; the value must be a metric of the rows)")
    rows = [c for c in table.columns[: table.columns.get_loc("images")] if c != pivot]
    grid = table.pivot(index=rows, columns=pivot, values=value)
    if order is not None:
        grid = grid[[c for c in order if c in grid.columns] + [c for c in grid.columns if c not in order]]
    grid.columns.name = None
    return grid.reset_index()


def format_table(table: pd.DataFrame, fmt: str = "markdown") -> str:
    if fmt == "latex":
        return table.to_latex(index=False, float_format="%.3f")
    if fmt == "csv":
        return table.to_csv(index=False)
    return table.to_markdown(index=False, floatfmt=".4g")


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
            frame = collect_paths(paths)
            report = config.get("report", {}) or {}
            text = format_table(summary_table(frame, list(report.get("group") or GROUP),
                                              bool(report.get("ci", False)), report.get("columns")))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a run directory, a sweep directory, or any tree of them")
    parser.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv"])
    parser.add_argument("--group", default=",".join(GROUP), help="comma-separated columns that make the rows")
    parser.add_argument("--ci", action="store_true", help="mean +- 1.96 std / sqrt(n) in each cell")
    parser.add_argument("--pivot", help="a group column whose values become the table's columns (e.g. solver)")
    parser.add_argument("--value", help="with --pivot: the metric shown in the grid (e.g. sw_to_posterior)")
    args = parser.parse_args(argv)
    if bool(args.pivot) != bool(args.value):
        parser.error("--pivot and --value go together")
    try:
        frame = collect(args.root)
        table = summary_table(frame, args.group.split(","), args.ci)
        if args.pivot:
            table = pivot_table(table, args.pivot, args.value, order=list(frame[args.pivot].drop_duplicates()))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(table, args.format))
    incomplete = sorted(set(frame.loc[frame["run_state"].isin(INCOMPLETE), "run_dir"])) if "run_state" in frame else []
    if incomplete:
        print(f"\nnote: {len(incomplete)} run(s) below {args.root} are not complete (killed, failed or running); their "
              f"rows are counted in from_incomplete_runs: " + ", ".join(incomplete), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
