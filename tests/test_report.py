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
