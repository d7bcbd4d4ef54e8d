"""A W&B Report of a study: ``python -m reddiff_bench dashboard STUDY [--project P] [--entity E]``.

The study's runs share the W&B group ``STUDY`` (``logger.group``), their job type is the solver
and their tags the task, model and scale. The report (built with ``wandb-workspaces``) has a
section per table of the study: a bar chart per metric of the table, grouped by solver, over the
runs of the study's group; the trade-off curves as scatter plots (each figure of kind
``tradeoff``); cost per solver; and memory over solver steps (``solver/memory_mb`` against
``solver_step``). Online (``wandb login`` done, runs synced with ``wandb sync``) it saves the
report and prints its URL; offline it says that it needs a login and saves nothing.
"""

from __future__ import annotations

import os
from typing import Any

from ..metrics.registry import METRICS, metric
from .studies import load_spec


def build_report(study: str, project: str, entity: str):
    """The report object (not saved): blocks and panels from the study's spec and metrics."""
    import wandb_workspaces.reports.v2 as wr  # heavy, optional: imported when used

    spec = load_spec(study)

    def runset(name: str = "Run set") -> Any:
        return wr.Runset(entity=entity, project=project, name=name, filters=f"Group = '{study}'",
                         groupby=["JobType"])

    blocks: list[Any] = [wr.H1(text=spec["title"]), wr.MarkdownBlock(text=spec.get("description", "").strip())]
    for table in spec.get("tables") or []:
        metrics = table["metrics"]
        metrics = list(dict.fromkeys(sum(metrics.values(), []))) if isinstance(metrics, dict) else list(metrics)
        if table.get("source", "rows") != "rows":
            continue
        panels = [wr.BarPlot(title=f"{metric(m).label} by solver", metrics=[wr.SummaryMetric(m)], groupby="JobType",
                             groupby_aggfunc="mean", groupby_rangefunc="stderr")
                  for m in metrics if m in METRICS]
        blocks += [wr.H2(text=table.get("caption") or table["name"]), wr.PanelGrid(runsets=[runset()], panels=panels)]
    tradeoffs = [f for f in spec.get("figures") or [] if f["kind"] == "tradeoff"]
    if tradeoffs:
        panels = [wr.ScatterPlot(title=f.get("caption", f["name"]), x=wr.SummaryMetric(x), y=wr.SummaryMetric(f["y"]))
                  for f in tradeoffs for x in f["x"]]
        blocks += [wr.H2(text="Fidelity against perception"), wr.PanelGrid(runsets=[runset()], panels=panels)]
    cost = [wr.BarPlot(title=f"{metric(m).label} by solver", metrics=[wr.SummaryMetric(m)], groupby="JobType",
                       groupby_aggfunc="mean") for m in ("seconds", "nfe", "vjp", "peak_mem_mb")]
    memory = wr.LinePlot(title="memory over solver steps (first batch)", x="solver_step", y=["solver/memory_mb"],
                         groupby="JobType")
    losses = wr.LinePlot(title="RED-Diff's loss terms over solver steps", x="solver_step",
                         y=["solver/loss_obs", "solver/loss_reg"])
    blocks += [wr.H2(text="Cost"), wr.PanelGrid(runsets=[runset()], panels=[*cost, memory, losses])]
    return wr.Report(project=project, entity=entity, title=f"reddiff_bench: {spec['title']}",
                     description=f"Study {study!r}: runs of the W&B group {study!r}", blocks=blocks)


def logged_in() -> bool:
    """Whether W&B has credentials here (an API key in the environment or in ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import wandb  # heavy, optional: imported when used

        return bool(wandb.Api(timeout=10).api_key)
    except Exception:  # noqa: BLE001 - no credentials, or no network: not logged in either way
        return False
