"""Tables from results stores: means, confidence intervals, pivots and the CLI's errors."""

import math

import pandas as pd
import pytest

from reddiff_bench.report import collect, main, pivot_table, summary_table


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
    table = summary_table(collect(tmp_path), ["task", "solver"])
    row = table[(table.task == "t2") & (table.solver == "b")].iloc[0]
    assert row.sw_to_posterior == pytest.approx(12.0) and row.images == 3
    assert table[(table.task == "t1") & (table.solver == "a")].iloc[0].failed == 1
    ci = summary_table(collect(tmp_path), ["task", "solver"], ci=True)
    half = 1.96 * 1.0 / math.sqrt(3)  # std of (0, 1, 2) is 1
    assert ci.loc[0, "sw_to_posterior"] == f"{1.0:.4g} ± {half:.2g}"


def test_pivot_puts_solvers_in_columns(tmp_path):
    write_runs(tmp_path)
    grid = pivot_table(summary_table(collect(tmp_path), ["task", "solver"]), "solver", "sw_to_posterior")
    assert list(grid.columns) == ["task", "a", "b"]
    grid = pivot_table(summary_table(collect(tmp_path), ["task", "solver"]), "solver", "sw_to_posterior", order=["b", "a"])
    assert list(grid.columns) == ["task", "b", "a"]
    assert grid.set_index("task").loc["t2", "b"] == pytest.approx(12.0)
    with pytest.raises(ValueError, match="add 'seed' to --group"):
        pivot_table(summary_table(collect(tmp_path), ["task", "solver"]), "seed", "sw_to_posterior")


def test_cli_prints_the_grid_and_names_bad_input(tmp_path, capsys):
    write_runs(tmp_path)
    assert main([str(tmp_path), "--pivot", "solver", "--value", "sw_to_posterior", "--ci"]) == 0
    out = capsys.readouterr().out
    assert "| task" in out and "11 ± 1.1" in out
    assert main([str(tmp_path / "missing")]) == 2
    assert "no metrics.csv below" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--pivot", "solver"])
