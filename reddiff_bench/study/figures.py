"""Paper figures (matplotlib, written as PNG and PDF): the fidelity/perception trade-off curve,
ablation bars with 95% intervals, cost per solver, cost against image side and batch size, memory
over solver steps, and the qualitative grid (the same images in rows; ground truth, measurement
and one column per solver, with column titles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from optuna.importance import FanovaImportanceEvaluator, get_param_importances

from ..metrics.registry import metric
from .tables import ARROW


def _pyplot():
    import matplotlib  # heavy, optional: imported when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy, optional: imported when used

    return plt


def save(fig, stem: Path) -> list[Path]:
    """``stem``.png and ``stem``.pdf; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Creator": None, "Producer": None, "CreationDate": None})
    _pyplot().close(fig)
    return paths


def _label(name: str) -> str:
    m = metric(name)
    return f"{m.label} {ARROW[m.direction]}".strip()


def tradeoff_curve(frame: pd.DataFrame, x: str, y: str, parameter: str, series: str | None, stem: Path,
                   log_x: bool = False, reference_x: str | None = None) -> list[Path]:
    """Means of ``y`` against means of ``x`` per value of ``parameter`` (e.g. lambda), one line per
    ``series`` value (e.g. task), each point labelled with its parameter value; ``reference_x``: a
    column whose mean is drawn as a dashed vertical line per series (e.g. the ground truth's value
    of the realism measure)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for name, part in (frame.groupby(series) if series else [("", frame)]):
        means = part.groupby(parameter)[[x, y]].mean().sort_index()
        line = ax.plot(means[x], means[y], marker="o", label=str(name))[0]
        for value, row in means.iterrows():
            ax.annotate(f"{value:g}", (row[x], row[y]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if reference_x and reference_x in part and part[reference_x].notna().any():
            ax.axvline(part[reference_x].mean(), color=line.get_color(), linestyle="--", linewidth=0.8,
                       label=f"{name}: the ground truth's")
    if log_x:
        from matplotlib.ticker import NullFormatter  # heavy, optional: imported when used

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    ax.set_title(f"{parameter}: fidelity against {metric(x).label}", fontsize=9)
    if series:
        ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return save(fig, stem)


def lines(frame: pd.DataFrame, x: str, y: str, series: str, panels: str | None, stem: Path, x_label: str,
          log_x: bool = False, log_y: bool = False) -> list[Path]:
    """Means of ``y`` against the numeric column ``x``, one line per ``series`` value (e.g. solver),
    one panel per ``panels`` value (e.g. sigma_y), shared axes; error bars: 95% intervals."""
    plt = _pyplot()
    names = sorted(frame[panels].unique()) if panels else [None]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 1.2, 3.2), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        part = frame[frame[panels] == name] if panels else frame
        for label, group in part.groupby(series, sort=False):
            stats = group.groupby(x)[y].agg(["mean", "std", "count"]).sort_index()
            ax.errorbar(stats.index, stats["mean"], yerr=1.96 * stats["std"] / np.sqrt(stats["count"]), marker="o",
                        markersize=3, capsize=2, label=str(label))
        ax.set_xscale("log" if log_x else "linear")
        ax.set_yscale("log" if log_y else "linear")
        ax.set_xlabel(x_label)
        ax.set_title(f"{panels} = {name:g}" if panels else "", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(_label(y))
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return save(fig, stem)


def posterior_projection(points: dict[tuple[str, str], np.ndarray], problems: list[str], solvers: list[str],
                         stem: Path) -> list[Path]:
    """A row per problem, a column per solver: its samples (colour) over exact posterior samples
    (grey), on the two leading principal directions of the exact samples."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(problems), len(solvers), figsize=(1.5 * len(solvers), 1.5 * len(problems)),
                             squeeze=False, sharex="row", sharey="row")
    for r, problem in enumerate(problems):
        exact = points[(problem, "exact")]
        for c, solver in enumerate(solvers):
            ax = axes[r][c]
            ax.scatter(exact[:, 0], exact[:, 1], s=1, color="0.6", alpha=0.5, rasterized=True)
            ax.scatter(points[(problem, solver)][:, 0], points[(problem, solver)][:, 1], s=1, color="C3", alpha=0.6,
                       rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(solver, fontsize=7)
            if c == 0:
                ax.set_ylabel(problem, fontsize=6)
    fig.suptitle("grey: exact posterior samples; red: the solver's (two leading principal directions)", fontsize=8)
    return save(fig, stem)


def ablation_bars(frame: pd.DataFrame, parameter: str, value: str, series: str | None, stem: Path) -> list[Path]:
    """Mean of ``value`` per ``parameter`` setting (bars, 95% intervals), grouped by ``series``."""
    plt = _pyplot()
    groups = [series, parameter] if series else [parameter]
    stats = frame.groupby(groups)[value].agg(["mean", "std", "count"])
    stats["half"] = 1.96 * stats["std"] / np.sqrt(stats["count"])
    settings = list(dict.fromkeys(stats.index.get_level_values(parameter)))
    names = list(dict.fromkeys(stats.index.get_level_values(series))) if series else [None]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(settings) * len(names) + 1.5), 3.4))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        part = stats.xs(name, level=series) if series else stats
        part = part.reindex(settings)
        ax.bar(np.arange(len(settings)) + k * width, part["mean"], width, yerr=part["half"], capsize=3,
               label=str(name) if series else None)
    ax.set_xticks(np.arange(len(settings)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels([str(s) for s in settings], rotation=30, ha="right", fontsize=8)
    ax.set_xlabel(parameter)
    ax.set_ylabel(_label(value))
    if series:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, stem)


def cost_bars(frame: pd.DataFrame, metrics: list[str], reference: str, stem: Path) -> list[Path]:
    """Per solver, each cost metric (one panel each), with its ratio to ``reference`` written above."""
    plt = _pyplot()
    means = frame.groupby("solver")[metrics].mean()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2))
    for ax, name in zip(np.atleast_1d(axes), metrics):
        values = means[name]
        ax.bar(values.index, values.values, color="tab:blue")
        if reference in values.index and values[reference] > 0:
            for i, v in enumerate(values.values):
                ax.text(i, v, f"{v / values[reference]:.2g}x", ha="center", va="bottom", fontsize=7)
        ax.set_title(_label(name), fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"cost per image (ratios to {reference})", fontsize=10)
    return save(fig, stem)


def cost_scaling(frame: pd.DataFrame, x: str, y: str, stem: Path, log: bool = True) -> list[Path]:
    """Mean ``y`` (e.g. seconds per image) against ``x`` (image side or batch size), a line per solver."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for solver, part in frame.groupby("solver"):
        means = part.groupby(x)[y].mean().sort_index()
        ax.plot(means.index, means.values, marker="o", label=solver)
    if log:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(_label(y))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save(fig, stem)


def memory_over_steps(memory: pd.DataFrame, stem: Path) -> list[Path]:
    """Memory in use after each solver step (first batch of each run), a line per solver."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for solver, part in memory.groupby("solver"):
        first = part[part["batch"] == part["batch"].min()].sort_values("step")
        ax.plot(first["step"], first["bytes"] / 2**20, label=solver)
    kind = ", ".join(sorted(set(memory["kind"]))) if "kind" in memory else ""
    ax.set_xlabel("solver step")
    ax.set_ylabel(f"memory in use (MiB; {kind})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, stem)


def qualitative_grid(columns: list[str], images: np.ndarray, row_labels: list[str], stem: Path) -> list[Path]:
    """``images`` (rows, columns, H, W, C) in [0, 1]: the same images in rows, one titled column each
    (ground truth | measurement | a solver each)."""
    plt = _pyplot()
    n_rows, n_cols = images.shape[:2]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols, 1.3 * n_rows + 0.3), squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(np.clip(images[r, c], 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=6, rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return save(fig, stem)


def tuning_history(studies: list, stem: Path) -> list[Path]:
    """The optimisation history of each study, one panel per solver: every trial's objective value
    (a square: the published settings, enqueued as trial 0 where they lie in the search range) and
    the best so far; ``studies``: ``(solver,
    optuna study, metric)``. Failed trials (a diverged image) are counted in the panel's title."""
    plt = _pyplot()
    name = studies[0][2]
    sign = 1 if metric(name).direction >= 0 else -1
    columns = min(4, len(studies))
    rows = -(-len(studies) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.1 * rows), squeeze=False)
    for ax, (solver, study, _) in zip(axes.flat, studies):
        trials = study.get_trials(deepcopy=False)
        done = [(t.number, t.values[0]) for t in trials if t.values is not None]
        failed = len(trials) - len(done)
        if done:
            numbers, values = zip(*done)
            best = np.maximum.accumulate(sign * np.array(values)) * sign
            ax.plot(numbers, values, "o", color="tab:blue", markersize=4)
            ax.step(numbers, best, where="post", color="tab:red", linewidth=1.2)
            for t in trials:
                if t.values is not None and t.user_attrs.get("published"):
                    ax.plot([t.number], [t.values[0]], "s", color="black", markersize=5)
        ax.set_title(f"{solver}" + (f" ({failed} failed)" if failed else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(studies):]:
        ax.axis("off")
    fig.supxlabel("Trial", fontsize=8)
    fig.supylabel(_label(name), fontsize=8)
    fig.tight_layout()
    return save(fig, stem)


def tuning_importance(studies: list, stem: Path) -> list[Path]:
    """The importance of each tuned setting of each solver (optuna's fANOVA evaluator, seeded), as
    horizontal bars grouped by solver."""
    plt = _pyplot()
    labels, values = [], []
    for solver, study, _ in studies:
        complete = [t for t in study.get_trials(deepcopy=False) if t.values is not None]
        if len(complete) < 2 or len({t.values[0] for t in complete}) < 2:  # nothing to apportion
            continue
        importances = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0),
                                            target=lambda t: t.values[0])
        for param, value in importances.items():
            labels.append(f"{solver}: {param}")
            values.append(value)
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(labels) + 1))
    ax.barh(range(len(labels)), values, color="tab:blue")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("Importance (fANOVA share of the objective's variance)")
    ax.set_xlim(0, 1)
    return save(fig, stem)


def pareto_front(study, metrics: list[str], stem: Path) -> list[Path]:
    """A multi-objective study's trials in its first two objectives, the Pareto front (optuna's
    ``best_trials``) highlighted."""
    plt = _pyplot()
    done = [t for t in study.get_trials(deepcopy=False) if t.values is not None]
    front = {t.number for t in study.best_trials}
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for on_front, colour, label in ((False, "tab:gray", "trial"), (True, "tab:red", "Pareto front")):
        points = [t.values[:2] for t in done if (t.number in front) == on_front]
        if points:
            ax.plot(*zip(*points), "o", color=colour, label=label, markersize=5)
    ax.set_xlabel(_label(metrics[0]))
    ax.set_ylabel(_label(metrics[1]))
    ax.legend(fontsize=7)
    return save(fig, stem)
