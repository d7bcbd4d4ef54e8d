"""Paper tables from rows: pandas aggregates, rendered as markdown and LaTeX (booktabs).

A cell is the mean over the images whose status is ok, with the half-width of its 95% interval
(``1.96 std / sqrt(n)``); run-level metrics (FID, KID) are one value per run. The best cell of each
column (within each block of ``best_within``) is bold, given the metric's direction (the header
says it: up arrow = higher is better). A cell that cannot be computed is "–", with the reason in a
footnote (e.g. LPIPS below 32 px). Columns keep the order asked for.

:func:`paired` compares each solver with a reference solver on the same images: the mean of the
per-image differences with its paired 95% t interval, the Wilcoxon signed-rank p-value (scipy) and
the win rate; bold marks only the differences significant at 5%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..metrics.registry import NOTE_OF, metric

ARROW = {+1: "↑", -1: "↓", 0: ""}
LATEX_ARROW = {+1: r"$\uparrow$", -1: r"$\downarrow$", 0: ""}
DASH = "–"



@dataclass
class Aggregate:
    """Per group and metric: mean, half-width of the 95% interval, image count; and the footnotes
    of the cells that could not be computed. ``labels``/``directions`` override the metric
    registry (derived tables); ``row_best``: bold the best cell of each row instead of each column
    (a metric pivoted into one column per solver)."""

    groups: list[str]
    metrics: list[str]
    mean: pd.DataFrame
    half: pd.DataFrame
    count: pd.Series
    reasons: dict[str, str]
    labels: dict[str, str] | None = None
    directions: dict[str, int] | None = None
    digits: dict[str, int] | None = None
    row_best: bool = False
    counts: dict[str, pd.Series] | None = None  # further integer columns after the metrics (e.g. failed images)
    remarks: dict[str, str] | None = None  # metric -> what its values mean here (e.g. FID's reference set)
    bold: dict[str, set] | None = None  # the cells to bold, when not the best of each column (paired tables)
    legend: str | None = None  # the sentence under the markdown table, when not the default one

    def label(self, name: str) -> str:
        return (self.labels or {}).get(name, metric(name).label)

    def direction(self, name: str) -> int:
        return (self.directions or {}).get(name, metric(name).direction)

    def digits_of(self, name: str) -> int:
        return (self.digits or {}).get(name, metric(name).digits)

    def header(self, name: str, arrows: dict[int, str]) -> str:
        return f"{self.label(name)} {arrows[self.direction(name)]}".strip()

    def frame(self) -> pd.DataFrame:
        """The aggregated numbers as one flat table (the CSV beside each table)."""
        out = self.mean.add_suffix("_mean").join(self.half.add_suffix("_ci95")).join(self.count.rename("images"))
        for name, column in (self.counts or {}).items():
            out[name] = column.reindex(out.index).fillna(0).astype(int)
        return out.reset_index()


def pivot(agg: Aggregate, level: str, name: str) -> Aggregate:
    """One metric with a column per value of the group ``level`` (e.g. solver); bold marks the
    best cell of each row."""
    keep = [g for g in agg.groups if g != level]
    mean = agg.mean[name].unstack(level)
    half = agg.half[name].unstack(level)
    columns = list(dict.fromkeys(agg.mean.index.get_level_values(level)))
    mean, half = mean[columns], half[columns]
    count = agg.count.groupby(level=keep).min()
    present = agg.count.unstack(level).reindex(index=mean.index, columns=columns).notna()
    reasons = {str(c): agg.reasons[name] for c in columns} if name in agg.reasons else {}
    for column in columns:  # a cell of a pivot is also empty when its run was never made
        if str(column) not in reasons and not present[column].all():
            reasons[str(column)] = f"no rows: not run for this {', '.join(keep)}"
    return Aggregate(keep, [str(c) for c in columns], mean.rename(columns=str), half.rename(columns=str), count,
                     reasons,
                     labels={str(c): str(c) for c in columns},
                     directions={str(c): agg.direction(name) for c in columns},
                     digits={str(c): agg.digits_of(name) for c in columns}, row_best=True)


def ratios(agg: Aggregate, level: str, reference: str) -> Aggregate:
    """Each mean divided by the ``reference`` group's (e.g. solver reddiff) with the same other
    group values: "how many times RED-Diff's cost"."""
    others = [g for g in agg.groups if g != level]
    ref = agg.mean.xs(reference, level=level)
    mean = agg.mean.copy()
    for key in mean.index:
        keys = dict(zip(agg.groups, key if isinstance(key, tuple) else (key,)))
        ref_key = tuple(keys[g] for g in others) if len(others) > 1 else (keys[others[0]] if others else None)
        base = ref.loc[ref_key] if ref_key is not None else ref.iloc[0]
        mean.loc[key] = agg.mean.loc[key] / base.where(base != 0)
    half = mean * math.nan
    reasons = dict(agg.reasons)
    for name in agg.metrics:
        if name not in reasons and mean[name].isna().any():
            reasons[name] = f"{reference}'s value is 0: no ratio"
    return Aggregate(agg.groups, agg.metrics, mean, half, agg.count, reasons,
                     labels={m: f"{agg.label(m)} / {reference}" for m in agg.metrics},
                     directions={m: agg.direction(m) for m in agg.metrics}, digits={m: 3 for m in agg.metrics})


PAIRED_ALPHA = 0.05


def paired(rows: pd.DataFrame, groups: list[str], metrics: list[str], reference: str, level: str = "solver",
           order: dict[str, list] | None = None, notes: dict[str, str] | None = None) -> Aggregate:
    """Each group's per-image metrics against those of the ``reference`` value of ``level`` (e.g.
    solver reddiff) with the same other group values, over the images both solved: per metric the
    mean difference (``m``) with the half-width of its paired 95% t interval, the two-sided
    Wilcoxon signed-rank p-value (``m_p``; 1 when every difference is 0) and the win rate (``m_win``:
    the share of images where the group is better, by the metric's direction; ties count half).
    Only metrics with a direction and a value per image are compared; ``notes`` (from the runs'
    summaries) say why a cell has none."""
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    others = [g for g in groups if g != level]
    metrics = [m for m in metrics if not metric(m).run_level and metric(m).direction != 0 and m in ok.columns
               and ok[m].notna().any()]
    base = aggregate(ok[ok[level] != reference], groups, metrics, order=order)
    ref = ok[ok[level] == reference]
    columns = [c for m in metrics for c in (m, f"{m}_p", f"{m}_win")]
    mean = pd.DataFrame(index=base.mean.index, columns=columns, dtype=float)
    half = pd.DataFrame(index=base.mean.index, columns=columns, dtype=float)
    count = pd.Series(0, index=base.mean.index, dtype=int)
    bold: dict[str, set] = {c: set() for c in columns}
    for key in base.mean.index:
        keys = dict(zip(groups, key if isinstance(key, tuple) else (key,)))
        mine = ok[np.logical_and.reduce([ok[g] == v for g, v in keys.items()])]
        theirs = ref[np.logical_and.reduce([ref[g] == keys[g] for g in others])] if others else ref
        merged = mine.merge(theirs, on=[*others, "image_id"], suffixes=("", "_ref"))
        for m in metrics:
            d = (merged[m] - merged[f"{m}_ref"]).dropna().to_numpy(dtype=float)
            n = len(d)
            count[key] = max(count[key], n)
            if n == 0:
                continue
            mean.at[key, m] = d.mean()
            if n > 1:
                half.at[key, m] = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n)
            p_value = 1.0 if not d.any() else float(stats.wilcoxon(d).pvalue)
            mean.at[key, f"{m}_p"] = p_value
            better = np.sign(d) * metric(m).direction
            mean.at[key, f"{m}_win"] = float(((better > 0).sum() + 0.5 * (better == 0).sum()) / n)
            if p_value < PAIRED_ALPHA:
                bold[m].add(key)
    labels, directions, digits = {}, {}, {}
    for m in metrics:
        labels.update({m: f"Δ {metric(m).label}", f"{m}_p": "p", f"{m}_win": "win"})
        directions.update({m: metric(m).direction, f"{m}_p": 0, f"{m}_win": 0})
        digits.update({m: metric(m).digits, f"{m}_p": 2, f"{m}_win": 2})
    legend = (f"Differences to {reference} on the same images (this row minus {reference}): mean ± half-width of the "
              f"paired 95% t interval; p: two-sided Wilcoxon signed-rank test; win: share of images where this row "
              f"is better (ties count half); bold: p < {PAIRED_ALPHA:g}")
    reasons = {}
    for m in metrics:
        if mean[m].isna().any():
            why = (notes or {}).get(m) or (notes or {}).get(NOTE_OF.get(m, m)) or "not computed for these runs"
            reasons.update({c: why for c in (m, f"{m}_p", f"{m}_win")})
    return Aggregate(list(groups), columns, mean, half, count, reasons, labels=labels, directions=directions,
                     digits=digits, bold=bold, legend=legend)


def mean_and_ci95(grouped):
    """Per group: the mean and the half-width of its 95% interval, ``1.96 std / sqrt(n)`` (NaN for
    a single value); ``grouped``: a pandas groupby over one column or several."""
    n = grouped.count()
    return grouped.mean(), (1.96 * grouped.std(ddof=1) / np.sqrt(n)).where(n > 1)


def aggregate(rows: pd.DataFrame, groups: list[str], metrics: list[str], runs: pd.DataFrame | None = None,
              notes: dict[str, str] | None = None, order: dict[str, list] | None = None) -> Aggregate:
    """Means over ok rows per group (``runs``: one row per run with its run-level metrics and the
    same group columns); ``notes``: why a metric is missing (from the runs' summaries). Groups come
    in the order of ``order`` (group column -> values), else in the order they first appear."""
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    index = ok.groupby(groups, sort=False).size().index
    if order:
        keys = [k if isinstance(k, tuple) else (k,) for k in index]
        seen = [list(dict.fromkeys(k[level] for k in keys)) for level in range(len(groups))]

        def rank(key: tuple) -> tuple:
            """Given values first (in their order), the others as they first appear."""
            out = []
            for level, (group, value) in enumerate(zip(groups, key)):
                given = order.get(group, [])
                out.append(given.index(value) if value in given else len(given) + seen[level].index(value))
            return tuple(out)

        index = index[sorted(range(len(index)), key=lambda i: rank(keys[i]))]
    mean = pd.DataFrame(index=index)
    half = pd.DataFrame(index=index)
    for name in metrics:
        if metric(name).run_level:
            if runs is not None and name in runs.columns:
                by_group = runs.groupby(groups)[name].mean()
                mean[name] = by_group.reindex(index)
            else:
                mean[name] = math.nan
            half[name] = math.nan
        elif name in ok.columns:
            mean[name], half[name] = mean_and_ci95(ok.groupby(groups)[name])
        else:
            mean[name] = math.nan
            half[name] = math.nan
    reasons = {}
    notes = notes or {}
    for name in metrics:
        if mean[name].isna().any():
            reasons[name] = notes.get(name) or notes.get(NOTE_OF.get(name, name)) or "not computed for these runs"
    remarks = {}
    for name in metrics:  # which reference set FID and KID were computed against, from the runs' summaries
        column = f"{name}_reference"
        if runs is not None and column in runs.columns and mean[name].notna().any():
            used = sorted(set(runs[column].dropna().astype(str)))
            if used:
                remarks[name] = "against " + "; ".join(used)
    return Aggregate(list(groups), list(metrics), mean, half, ok.groupby(groups).size().reindex(index), reasons,
                     remarks=remarks or None)


def _format(value: float, half: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    text = f"{value:.{digits}g}"
    if half is not None and not (isinstance(half, float) and math.isnan(half)) and half != 0:
        text += f" ± {half:.2g}"
    return text


def best_cells(agg: Aggregate, best_within: list[str] | None = None) -> dict[str, set]:
    """For each metric with a direction, the index entries holding its best mean (within each block
    of the ``best_within`` group columns); with ``agg.row_best``, the best of each row."""
    out: dict[str, set] = {name: set() for name in agg.metrics}
    if agg.row_best:
        for key, row in agg.mean.iterrows():
            values = row.dropna()
            if len(values) < 2:
                continue
            direction = agg.direction(values.index[0])
            if direction == 0:
                continue
            best = values.max() if direction > 0 else values.min()
            for name in values.index[values == best]:
                out[name].add(key)
        return out
    for name in agg.metrics:
        direction = agg.direction(name)
        column = agg.mean[name]
        if direction == 0 or column.notna().sum() < 2:
            continue
        if best_within:
            blocks = column.groupby(level=[agg.groups.index(g) for g in best_within])
        else:
            blocks = [(None, column)]
        for _, block in blocks:
            block = block.dropna()
            if len(block) < 2:
                continue
            best = block.max() if direction > 0 else block.min()
            out[name] |= set(block.index[block == best])
    return out


def _footnotes(agg: Aggregate) -> list[tuple[list[str], str]]:
    """(metrics, reason) per distinct reason, in the order of the columns."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in agg.reasons.items():
        by_reason.setdefault(reason, []).append(name)
    return [(names, reason) for reason, names in by_reason.items()]


def _marks(agg: Aggregate, symbols: list[str]) -> dict[str, str]:
    return {name: symbols[i] for i, (names, _) in enumerate(_footnotes(agg)) for name in names}


def to_markdown(agg: Aggregate, best_within: list[str] | None = None, intervals: bool = True) -> str:
    """The table in markdown: a row per group, a cell per metric (mean, and ± the half-width of its
    95% interval unless ``intervals`` is false), the best bold, footnotes for the dashes."""
    bold = agg.bold if agg.bold is not None else best_cells(agg, best_within)
    marks = _marks(agg, ["*" * (i + 1) for i in range(len(agg.reasons))])
    counts = agg.counts or {}
    header = agg.groups + ["images"] + [agg.header(m, ARROW) for m in agg.metrics] + list(counts)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] * len(agg.groups) + ["---:"] * (len(header) - len(agg.groups))) + "|"]
    for key in agg.mean.index:
        keys = key if isinstance(key, tuple) else (key,)
        cells = [str(k) for k in keys] + [str(int(agg.count.get(key, 0)))]
        for name in agg.metrics:
            text = _format(agg.mean.at[key, name], agg.half.at[key, name] if intervals else None,
                           agg.digits_of(name))
            if text == DASH:
                text += marks.get(name, "")
            elif key in bold.get(name, set()):
                text = f"**{text}**"
            cells.append(text)
        cells += [str(int(column.get(key, 0))) for column in counts.values()]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"{marks[names[0]]} {', '.join(agg.label(n) for n in names)}: {reason}" for names,
             reason in _footnotes(agg)]
    notes += [f"{agg.label(name)}: {remark}" for name, remark in (agg.remarks or {}).items()]
    legend = ("Mean ± half-width of the 95% interval over images" if intervals else "Mean over images") + (
        "; bold: the best ") + (
        "in its row" if agg.row_best else "in its column")
    legend += f" within each {', '.join(best_within)}" if best_within and not agg.row_best else ""
    legend = agg.legend or legend
    return "\n".join(lines + ["", legend + ".", *([""] + notes if notes else [])]) + "\n"


def latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"),
                 ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}"),
                 ("Δ", r"$\Delta$"), ("±", r"$\pm$")):
        text = text.replace(a, b)
    return text


def to_latex(agg: Aggregate, caption: str = "", label: str = "", best_within: list[str] | None = None) -> str:
    """A ``table`` with a booktabs ``tabular``; underscores and other specials escaped."""
    bold = agg.bold if agg.bold is not None else best_cells(agg, best_within)
    marks = _marks(agg, list("abcdefghijklmnopqrstuvwxyz"))
    counts = agg.counts or {}
    columns = "l" * len(agg.groups) + "r" * (1 + len(agg.metrics) + len(counts))
    header = [latex_escape(g) for g in agg.groups] + ["$n$"] + [
        f"{latex_escape(agg.label(m))} {LATEX_ARROW[agg.direction(m)]}".strip() for m in agg.metrics] + [
        latex_escape(name) for name in counts]
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
           " & ".join(header) + r" \\", r"\midrule"]
    previous = None
    for key in agg.mean.index:
        keys = key if isinstance(key, tuple) else (key,)
        if best_within and previous is not None and keys[0] != previous:
            out.append(r"\midrule")
        previous = keys[0]
        cells = [latex_escape(str(k)) for k in keys] + [str(int(agg.count.get(key, 0)))]
        for name in agg.metrics:
            text = _format(agg.mean.at[key, name], agg.half.at[key, name], agg.digits_of(name))
            if text == DASH:
                cells.append(f"--$^{{{marks.get(name, '')}}}$")
                continue
            text = text.replace("±", r"$\pm$")
            cells.append(rf"\textbf{{{text}}}" if key in bold.get(name, set()) else text)
        cells += [str(int(column.get(key, 0))) for column in counts.values()]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    for names, reason in _footnotes(agg):
        labels = ", ".join(latex_escape(agg.label(n)) for n in names)
        out.append(rf"\par{{\footnotesize $^{{{marks[names[0]]}}}$ {labels}: {latex_escape(reason)}}}")
    for name, remark in (agg.remarks or {}).items():
        out.append(rf"\par{{\footnotesize {latex_escape(agg.label(name))}: {latex_escape(remark)}}}")
    if caption:
        default = r"Mean $\pm$ half-width of the 95\% interval; bold: best."
        how = latex_escape(agg.legend) + "." if agg.legend else default
        out.append(rf"\caption{{{latex_escape(caption)} {how}}}")
    if label:
        out.append(rf"\label{{{label}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"
