"""Tables from results stores: one run, a sweep directory, or any tree of runs.

``python -m reddiff_bench.report DIR [--format markdown|latex|csv]`` gathers every
``metrics.csv`` below DIR and prints the means per (task, solver). A Hydra sweep prints the same
table when it ends (``SweepReport`` callback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback

# Columns shown, in order, when present; means over images with status ok.
TABLE_COLUMNS = ["psnr", "ssim", "lpips", "mse_to_post_mean", "psnr_post_mean", "data_consistency",
                 "nfe", "vjp", "seconds", "peak_mem_mb"]
GROUP = ["task", "solver"]


def collect(root: str | Path) -> pd.DataFrame:
    paths = sorted(Path(root).rglob("metrics.csv"))
    if not paths:
        raise FileNotFoundError(f"no metrics.csv below {root}")
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Means per (task, solver) over ok images, with image counts."""
    group = list(GROUP)
    if "config_hash" in frame and frame.groupby(group)["config_hash"].nunique().max() > 1:
        group.append("config_hash")  # the same solver name with different settings: keep them apart
    ok = frame[frame["status"] == "ok"]
    columns = [c for c in TABLE_COLUMNS if c in ok.columns and ok[c].notna().any()]
    table = ok.groupby(group)[columns].mean()
    table.insert(0, "images", ok.groupby(group).size())
    failed = frame[frame["status"] != "ok"].groupby(group).size()
    if len(failed):
        table["failed"] = failed.reindex(table.index).fillna(0).astype(int)
    return table.reset_index()


def format_table(table: pd.DataFrame, fmt: str = "markdown") -> str:
    if fmt == "latex":
        return table.to_latex(index=False, float_format="%.3f")
    if fmt == "csv":
        return table.to_csv(index=False)
    return table.to_markdown(index=False, floatfmt=".4g")


class SweepReport(Callback):
    """Hydra callback: print the table of a whole sweep when it ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            frame = collect(sweep_dir)
        except FileNotFoundError:
            return
        text = format_table(summary_table(frame))
        (sweep_dir / "table.md").write_text(text + "\n")
        print(f"\nSweep {sweep_dir}:\n{text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a run directory, a sweep directory, or any tree of them")
    parser.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv"])
    args = parser.parse_args(argv)
    try:
        frame = collect(args.root)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(summary_table(frame), args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
