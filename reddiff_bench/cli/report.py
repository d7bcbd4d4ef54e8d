"""``python -m reddiff_bench report DIR [--format markdown|latex|csv] [--group task,solver]
[--means] [--pivot solver --value METRIC]``: the table of every run below DIR (see ``study.report``)."""

from __future__ import annotations

import argparse
import sys

from ..study import report
from ..study.report import GROUP, INCOMPLETE, pivot_on, render, rows_below, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reddiff_bench report", description=report.__doc__.splitlines()[0])
    parser.add_argument("root", help="a run directory, a sweep directory, or any tree of them")
    parser.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv"])
    parser.add_argument("--group", default=",".join(GROUP), help="comma-separated columns that make the rows")
    parser.add_argument("--means", action="store_true", help="means alone, without the 95%% intervals (markdown)")
    parser.add_argument("--pivot", help="a group column whose values become the table's columns (e.g. solver)")
    parser.add_argument("--value", help="with --pivot: the metric shown in the grid (e.g. sw_to_posterior)")
    args = parser.parse_args(argv)
    if bool(args.pivot) != bool(args.value):
        parser.error("--pivot and --value go together")
    try:
        frame = rows_below(args.root)
        table = summary(frame, args.group.split(","))
        if args.pivot:
            table = pivot_on(table, args.pivot, args.value)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(table, args.format, intervals=not args.means))
    for run_dir, ids in frame.attrs.get("outside_dataset", {}).items():
        print(f"note: {run_dir}: {len(ids)} row(s) of images its dataset no longer holds are left out: "
              f"{', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}", file=sys.stderr)
    incomplete = sorted(set(frame.loc[frame["run_state"].isin(INCOMPLETE), "run_dir"])) if "run_state" in frame else []
    if incomplete:
        print(f"\nnote: {len(incomplete)} run(s) below {args.root} are not complete (killed, failed or running); their "
              f"rows are counted in from_incomplete_runs: " + ", ".join(incomplete), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
