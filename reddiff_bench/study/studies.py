"""The study layer: ``experiments/<study>/study.yaml`` names a study's sweeps (experiment presets
plus overrides) at each scale, and the tables and figures made from their rows.

* ``run_study``: run or resume each sweep of a scale (``python -m reddiff_bench -m ...`` into
  ``outputs/studies/<study>/<scale>/<sweep>``), then ``collect`` and ``build``.
* ``collect``: the sweeps' per-image rows into ``experiments/<study>/<scale>/rows.csv.gz``, one
  summary per run into ``runs.csv``, memory profiles into ``memory.csv.gz`` (for the studies
  that draw them), and the images of each qualitative grid into ``<figure>.npz``: everything a
  table or figure needs, committed.
* ``build``: tables (markdown, LaTeX, the aggregated CSV) and figures (PNG, PDF) from those files
  alone, and the study's README; ``make tables`` on a fresh clone rebuilds them exactly.

A study's spec (YAML)::

    title: ...
    description: ...
    scales:
      offline: {note: ..., sweeps: {NAME: [override, ...]}, bench: [args],   # runs on 2 CPU cores
                tune: {NAME: [override, ...]}, findings: ...}   # tune: python -m reddiff_bench tune, first
      paper:   {note: ..., sweeps: {...}}                                    # ImageNet / FFHQ, GPUs
    tables:  [{name, caption, group: [...], metrics: [...] or {scale: [...]}, where: {...},
               best_within: [...]}]
    figures: [{name, kind, where: {...}, ...}]     # kinds: see FIGURES
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from omegaconf import OmegaConf

from ..diffusion import make_generator
from ..errors import ConfigError
from ..files import atomic_write_text, read_or_explain
from ..operators import operator_matrix, support_values
from ..run.grid import measurement_image
from ..run.identity import override_key
from ..run.outputs import load_estimate, to_uint8
from ..run.pipeline import instantiate_group, missing_inputs
from ..run.settings import compose
from ..run.store import TEXT_COLUMNS, read_rows, run_state
from . import figures as fig
from . import tuning
from .sweeps import expand_sweep
from .tables import aggregate, paired, pivot, ratios, to_latex, to_markdown

REPO = Path(__file__).resolve().parents[2]  # the checkout that holds experiments/
EXPERIMENTS = REPO / "experiments"
OUTPUTS = REPO / "outputs" / "studies"
SCALES = ("offline", "paper")
SOLVER_ORDER = ["reddiff", "reddiff_parallel", "dps", "pgdm", "ddrm", "ddnm", "diffpir", "daps", "mcgdiff", "ddim",
                "pinv", "latent_reddiff", "latent_dps", "latent_psld", "latent_resample", "latent_daps"]
# the order of rows and columns in tables: every option of conf/solver/ once (tested), pixel solvers first


def studies() -> list[str]:
    return sorted(p.parent.name for p in EXPERIMENTS.glob("*/study.yaml"))


def load_spec(study: str) -> dict[str, Any]:
    path = EXPERIMENTS / study / "study.yaml"
    if not path.is_file():
        raise ConfigError(f"no study {study!r} ({path} does not exist); studies: {', '.join(studies())}")
    return yaml.safe_load(path.read_text())


def data_dir(study: str, scale: str) -> Path:
    return EXPERIMENTS / study / scale


# --- running ----------------------------------------------------------------------------------------

def run_study(study: str, scale: str, full: bool = False, extra: list[str] | None = None) -> int:
    """Run or resume every sweep of ``study`` at ``scale``; returns the worst exit status."""
    spec = load_spec(study)
    plan = spec["scales"].get(scale)
    if plan is None:
        raise ConfigError(f"study {study!r} has no {scale!r} scale")
    sweeps = dict(plan.get("sweeps") or {})
    if full:
        sweeps.update(plan.get("full_sweeps") or {})
    tunes = dict(plan.get("tune") or {})
    for name, overrides in tunes.items():
        first_job(study, scale, name, overrides)
    status = 0
    for name, overrides in tunes.items():  # tuning first: the sweeps after it may run its settings (+tuned=)
        status = max(status, _launch(f"{study} / {scale} / tune {name}",
                                     ["tune", *tune_overrides(study, scale, name, overrides), *(extra or [])]))
    for name, overrides in sweeps.items():  # a sweep that does not compose stops the study before any work
        first_job(study, scale, name, overrides)
    for name, overrides in sweeps.items():
        code = _launch(f"{study} / {scale} / {name}", ["-m", *sweep_overrides(study, scale, name, overrides),
                                                       *(extra or [])])
        status = max(status, code)
        if code == 2 and not (OUTPUTS / study / scale / name / "table.md").is_file():
            return code  # nothing ran (no data, no checkpoint): the next sweeps would not either
    bench = plan.get("bench")
    if bench is not None:
        out = data_dir(study, scale) / "bench.csv"
        code = subprocess.call([sys.executable, "-m", "reddiff_bench", "bench", *bench, "--out", str(out)], cwd=REPO)
        status = max(status, code)
    collect(study, scale, list(sweeps), spec)
    return status


def sweep_overrides(study: str, scale: str, name: str, overrides: list[str]) -> list[str]:
    """The command line of one sweep of a study: its overrides, its directory, and the study's
    name, scale and sweep (which the W&B logger takes as the run's group and tags)."""
    return [*overrides, f"hydra.sweep.dir={OUTPUTS / study / scale / name}", f"study.name={study}",
            f"study.scale={scale}", f"study.sweep={name}"]


def _launch(title: str, arguments: list[str]) -> int:
    """``python -m reddiff_bench ARGUMENTS`` from the checkout, timed; its exit status."""
    print(f"\n== {title}: {' '.join(arguments)}", flush=True)
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "reddiff_bench", *arguments], cwd=REPO)
    print(f"== {title}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
    return code


def tune_overrides(study: str, scale: str, name: str, overrides: list[str]) -> list[str]:
    """The command line of one tuning entry of a study (``python -m reddiff_bench tune``): its
    studies live under ``outputs/studies/<study>/<scale>/tune/<name>``."""
    return [*overrides, f"tune.dir={OUTPUTS / study / scale / 'tune' / name}", f"study.name={study}",
            f"study.scale={scale}", f"study.sweep=tune-{name}"]


def first_job(study: str, scale: str, name: str, overrides: list[str]):
    """The composed config of a sweep's first job (as ``run_study`` launches it); a
    :class:`ConfigError` naming the sweep when its overrides do not compose."""

    try:
        return compose(expand_sweep(sweep_overrides(study, scale, name, list(overrides)))[0])
    except Exception as err:  # noqa: BLE001 - any composition error (Hydra's, OmegaConf's, ours) names the sweep
        raise ConfigError(f"study {study!r}, sweep {name!r} does not compose: {err}") from None


def preflight(study: str, scale: str) -> None:
    """Refuse at once (before any sweep) when the data or checkpoints of a sweep are not here,
    naming everything that is missing."""
    problems = []
    for name, overrides in (load_spec(study)["scales"][scale].get("sweeps") or {}).items():
        problems += [f"sweep {name!r}: {p}" for p in missing_inputs(first_job(study, scale, name, overrides))]
    if problems:
        raise ConfigError(f"study {study!r} at the {scale} scale cannot run:\n  " + "\n  ".join(problems))


# --- collecting -------------------------------------------------------------------------------------

def _jobs(study: str, scale: str, sweeps: list[str]):
    """The finished jobs of ``sweeps``. A job that was killed, failed or is still running holds
    only some of its rows: a table of it would mix a subset of images with whole runs, so it is
    left out and named (re-running the study resumes it)."""
    unfinished = []
    for sweep in sweeps:
        for job in sorted((OUTPUTS / study / scale / sweep).glob("*/metrics.csv")):
            state = run_state(job.parent)
            if state == "complete":
                yield sweep, job.parent
            else:
                unfinished.append(f"{sweep}/{job.parent.name} ({state})")
    if unfinished:
        print(f"study {study!r}: left out {len(unfinished)} unfinished run(s) (re-run the study to resume them): "
              + ", ".join(unfinished), file=sys.stderr)


def collect(study: str, scale: str, sweeps: list[str], spec: dict[str, Any]) -> None:
    """Everything the tables and figures need, from the sweeps' run directories into
    ``experiments/<study>/<scale>/`` (per-image rows compressed). A sweep of the spec whose run
    directories are not on this machine (e.g. the full Gaussian-mixture grid, committed once) keeps
    its committed rows."""
    target = data_dir(study, scale)
    target.mkdir(parents=True, exist_ok=True)
    plan = spec["scales"][scale]
    every = list(dict.fromkeys([*(plan.get("sweeps") or {}), *(plan.get("full_sweeps") or {}), *sweeps]))
    present = [s for s in every if any((OUTPUTS / study / scale / s).glob("*/metrics.csv"))]
    rows, runs, memory = _kept(target, [s for s in every if s not in present])
    # memory profiles are kept for the studies that draw them (a row per solver step: large)
    draws_memory = any(f.get("kind") == "memory_over_steps" for f in spec.get("figures") or [])
    for sweep, job in _jobs(study, scale, present):
        frame = read_rows(job / "metrics.csv")
        config = yaml.safe_load((job / "config.yaml").read_text())
        keys = _job_keys(frame, config)
        for key, value in keys.items():
            if key not in frame.columns:
                frame[key] = value
        frame.insert(0, "sweep", sweep)
        rows.append(frame)
        summary = read_or_explain(job / "summary.json", lambda p: json.loads(p.read_text()), "run summary",
                                  "Run the study again: the job is complete, so it only writes its summary "
                                  "again.") if (job / "summary.json").is_file() else {}
        runs.append(pd.DataFrame([{"sweep": sweep, "job": job.name, **keys,
                                   **{k: v for k, v in summary.items() if not isinstance(v, (dict, list))},
                                   "notes": json.dumps(summary.get("notes", {}), sort_keys=True)}]))
        if draws_memory and (job / "memory.csv").is_file():
            profile = pd.read_csv(job / "memory.csv", on_bad_lines="skip")
            for key, value in keys.items():
                profile[key] = value
            profile.insert(0, "sweep", sweep)
            memory.append(profile)
    if not rows:
        raise ConfigError(f"no finished rows for study {study!r} at scale {scale!r} under {OUTPUTS / study / scale}")
    pd.concat(rows, ignore_index=True).to_csv(target / "rows.csv.gz", index=False,
                                              compression={"method": "gzip", "mtime": 0})
    atomic_write_text(target / "runs.csv", pd.concat(runs, ignore_index=True).to_csv(index=False))
    if memory:
        pd.concat(memory, ignore_index=True).to_csv(target / "memory.csv.gz", index=False,
                                                    compression={"method": "gzip", "mtime": 0})
    if plan.get("tune"):
        _collect_tuning(study, scale, plan["tune"], target)
    for spec_figure in spec.get("figures") or []:
        if spec_figure["kind"] == "qualitative_grid":
            _collect_grid(study, scale, present, spec_figure, target)
        elif spec_figure["kind"] == "posterior_projection":
            _collect_projection(study, scale, present, spec_figure, target)


def _collect_tuning(study: str, scale: str, tunes: dict[str, list[str]], target: Path) -> None:
    """The tuning entries' studies into ``tuning_trials.csv.gz`` (every trial: settings, objective
    values, cost), ``tuning_studies.csv`` (cost per study) and ``tuning_settings.csv`` (per setting: the
    published value, the tuned one and the search range)."""
    trials, costs, values = [], [], []
    for name, overrides in tunes.items():
        for job in tuning_jobs(study, scale, name, overrides):
            cfg = compose(job)
            tuned = tuning.study_of(cfg)
            path = tuned.folder / "trials.csv"
            if not path.is_file():
                print(f"study {study!r}: tuning {name} {tuned.key} has not finished (re-run the study)",
                      file=sys.stderr)
                continue
            model, task, solver = tuned.key.split("/")
            keys = {"tune": name, "objective": tuned.label, "model": model, "task": task, "solver": solver}
            frame = pd.read_csv(path).drop(columns=["validation_ids"], errors="ignore")
            trials.append(frame.assign(**keys))
            cost = json.loads((tuned.folder / "cost.json").read_text())
            costs.append({**keys, **cost, "validation_ids": _validation_ids(tuned)})
            best = tuning.best_trial(tuned, tuned.load())
            for param in tuned.space.params:
                values.append({**keys, "setting": param.path, "published": OmegaConf.select(cfg, param.path),
                               "tuned": best.params.get(param.name) if best is not None else None,
                               "low": param.low, "high": param.high, "log": param.log})
    if trials:
        pd.concat(trials, ignore_index=True).to_csv(target / "tuning_trials.csv.gz", index=False, float_format="%.6g",
                                                    compression={"method": "gzip", "mtime": 0})
        atomic_write_text(target / "tuning_studies.csv", pd.DataFrame(costs).to_csv(index=False, float_format="%.6g"))
        atomic_write_text(target / "tuning_settings.csv", pd.DataFrame(values).to_csv(index=False, float_format="%.6g"))


def tuning_jobs(study: str, scale: str, name: str, overrides: list[str]) -> list[list[str]]:
    """The jobs (one study each) of a tuning entry, once each: a key swept both by the preset and
    on the command line takes the command line's values."""
    jobs = expand_sweep(tune_overrides(study, scale, name, list(overrides)))
    return list({tuple(sorted({override_key(o): o for o in job}.items())): job for job in jobs}.values())


def _validation_ids(tuned: tuning.Study) -> str:
    first = tuned.trial_dir(0) / "metrics.csv"
    return " ".join(map(str, read_rows(first)["image_id"])) if first.is_file() else ""


def _kept(target: Path, sweeps: list[str]) -> tuple[list, list, list]:
    """The committed rows, runs and memory of ``sweeps`` (whose run directories are not here)."""
    kept = []
    for name in ("rows.csv.gz", "runs.csv", "memory.csv.gz"):
        path = target / name
        frame = pd.read_csv(path, dtype=TEXT_COLUMNS) if path.is_file() else pd.DataFrame()
        kept.append([frame[frame["sweep"].isin(sweeps)]] if sweeps and "sweep" in frame else [])
    return kept[0], kept[1], kept[2]


def _job_keys(frame: pd.DataFrame, config: dict[str, Any]) -> dict[str, Any]:
    """What identifies a job in tables: its rows' ids and the settings an ablation varies."""
    first = frame.iloc[0]
    keys = {k: first[k] for k in ("model", "task", "solver", "dataset", "sigma_y") if k in frame.columns}
    solver = config.get("solver", {})
    for name in ("steps", "lam", "order", "weighting"):
        if name in solver and not isinstance(solver[name], dict):
            keys[f"solver.{name}"] = solver[name]
    if isinstance(solver.get("weighting"), dict):
        keys["solver.weighting"] = solver["weighting"]["_target_"].rsplit(".", 1)[-1]
    if isinstance(solver.get("optimizer"), dict) and "lr" in solver["optimizer"]:
        keys["solver.lr"] = solver["optimizer"]["lr"]
    model = config.get("model", {})
    for name in ("image_size",):
        if model.get(name) is not None:
            keys[f"model.{name}"] = model[name]
    keys["batch_size"] = config.get("batch_size")
    keys["settings"] = "tuned" if config.get("tuned") else "published"  # +tuned=<model>/<task> or not
    return keys


def _solver_jobs(study: str, scale: str, sweeps: list[str], spec: dict[str, Any]) -> tuple[dict[str, Path], list[str]]:
    """A figure's jobs: the first finished job of each solver whose first row (and sweep name)
    matches the figure's ``where``, and the figure's ``solvers`` that have one, in its order."""
    by_solver: dict[str, Path] = {}
    for sweep, job in _jobs(study, scale, sweeps):
        first_row = {**read_rows(job / "metrics.csv", nrows=1).iloc[0].to_dict(), "sweep": sweep}
        if all(str(first_row.get(k)) == str(v) for k, v in spec.get("where", {}).items()):
            by_solver.setdefault(str(first_row["solver"]), job)
    return by_solver, [s for s in spec["solvers"] if s in by_solver]


def _collect_projection(study: str, scale: str, sweeps: list[str], spec: dict[str, Any], target: Path) -> None:
    """The points of a posterior projection figure: for the first ``problems`` problems of the jobs
    matching ``where``, each solver's saved samples and as many exact posterior samples (drawn as
    the run's reference metrics draw them), projected on the two leading principal directions of
    the exact samples; saved as ``<name>.npz`` (small: 2-D points)."""
    by_solver, solvers = _solver_jobs(study, scale, sweeps, spec)
    if not solvers:
        return
    first = by_solver[solvers[0]]
    config = OmegaConf.load(first / "config.yaml")
    prior = instantiate_group(config.model, "model")
    task = instantiate_group(config.task, "task")
    ok = read_rows(first / "metrics.csv")
    ids = list(ok[ok["status"] == "ok"]["image_id"].astype(str))[: int(spec.get("problems", 3))]
    points = {}
    needed = [first / "measurements" / f"{i}.pt" for i in ids]
    needed += [by_solver[s] / "outputs" / f"{i}.pt" for s in solvers for i in ids]
    if not all(path.is_file() for path in needed):
        print(f"study {study!r}: figure {spec['name']!r} needs the runs' measurements and samples "
              f"(save_measurements=true, save_outputs=true); it is not drawn", file=sys.stderr)
        return
    for image_id in ids:
        record = torch.load(first / "measurements" / f"{image_id}.pt", map_location="cpu", weights_only=True)
        artifacts = {k.removeprefix("artifact_"): v for k, v in record.items() if k.startswith("artifact_")}
        operator = task.operator([artifacts], tuple(prior.image_shape))
        A = operator_matrix(operator, tuple(prior.image_shape))
        y = support_values(operator.cpu().double(), record["y"][None].double())
        samples = {s: torch.load(by_solver[s] / "outputs" / f"{image_id}.pt", map_location="cpu",
                                 weights_only=True)["samples"].double() for s in solvers}
        n = len(next(iter(samples.values())))
        generator = make_generator(int(config.seed), "posterior", task.name, image_id)
        exact = prior.exact_posterior_samples(A, y, task.sigma_y, n, generator)[0]
        centre = exact.mean(0)
        directions = torch.linalg.eigh(torch.cov(exact.T))[1][:, -2:].flip(-1)  # the two leading axes
        points[f"{image_id}/exact"] = ((exact - centre) @ directions).numpy()
        for s, values in samples.items():
            points[f"{image_id}/{s}"] = ((values - centre) @ directions).numpy()
    np.savez_compressed(target / f"{spec['name']}.npz", problems=np.array(ids), solvers=np.array(solvers),
                        **{k.replace("/", "__"): v.astype(np.float32) for k, v in points.items()})


def _collect_grid(study: str, scale: str, sweeps: list[str], spec: dict[str, Any], target: Path) -> None:
    """The images of a qualitative grid: for the first ``images`` ids, ground truth, measurement and
    each solver's estimate, as uint8 arrays (small at the offline scale)."""

    by_solver, solvers = _solver_jobs(study, scale, sweeps, spec)
    if not solvers:
        return
    first = by_solver[solvers[0]]
    config = OmegaConf.load(first / "config.yaml")
    dataset = instantiate_group(config.dataset, "dataset")
    order = {dataset.image_id(i): i for i in range(len(dataset))}
    ok = read_rows(first / "metrics.csv")
    ok_ids = list(ok[ok["status"] == "ok"]["image_id"].astype(str))
    count = min(int(spec.get("images", 4)), len(ok_ids))
    ids = [ok_ids[round(k * len(ok_ids) / count)] for k in range(count)]  # spread over the dataset
    grid = []
    for image_id in ids:
        x = dataset[order[image_id]][1]
        y = torch.load(first / "measurements" / f"{image_id}.pt", map_location="cpu", weights_only=True)["y"][None]
        row = [x, measurement_image(y, tuple(x.shape))[0]]
        row += [load_estimate(by_solver[s] / "outputs", image_id)[0] for s in solvers]
        grid.append(torch.stack([to_uint8(im) for im in row]).permute(0, 2, 3, 1).numpy())
    np.savez_compressed(target / f"{spec['name']}.npz", images=np.stack(grid),
                        columns=np.array(["ground truth", "measurement", *solvers]), rows=np.array(ids))


# --- building ---------------------------------------------------------------------------------------

FIGURES = ("tradeoff", "ablation_bars", "cost_bars", "cost_scaling", "memory_over_steps", "qualitative_grid", "lines",
           "posterior_projection", "tuning_history", "tuning_importance")


def _select(frame: pd.DataFrame, where: dict[str, Any] | None) -> pd.DataFrame:
    for key, value in (where or {}).items():
        values = value if isinstance(value, list) else [value]
        frame = frame[frame[key].astype(str).isin([str(v) for v in values])]
    return frame


def _notes(runs: pd.DataFrame) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in runs.get("notes", pd.Series(dtype=str)).dropna():
        out.update({k: v for k, v in json.loads(text).items() if k not in out})
    return out


def build(study: str, scale: str, figures: bool = True) -> list[Path]:
    """Tables and figures (unless ``figures`` is false) of ``study`` at ``scale`` from its committed
    files; returns what it wrote."""
    spec = load_spec(study)
    folder = data_dir(study, scale)
    if not (folder / "rows.csv.gz").is_file():
        return []
    rows = read_rows(folder / "rows.csv.gz")
    runs = pd.read_csv(folder / "runs.csv") if (folder / "runs.csv").is_file() else pd.DataFrame()
    written: list[Path] = []
    for table in spec.get("tables") or []:
        for name, agg in _tables(table, scale, rows, runs, folder):
            stem = folder / name
            best = None if agg.row_best else table.get("best_within")
            atomic_write_text(stem.with_suffix(".md"), to_markdown(agg, best))
            atomic_write_text(stem.with_suffix(".tex"), to_latex(agg, table.get("caption", ""),
                                                                 f"tab:{study}-{name}", best))
            atomic_write_text(stem.with_suffix(".csv"), agg.frame().to_csv(index=False, float_format="%.6g"))
            written += [stem.with_suffix(s) for s in (".md", ".tex", ".csv")]
    for figure in (spec.get("figures") or []) if figures else []:
        written += _figure(figure, rows, runs, folder)
    return written


def _tables(table: dict[str, Any], scale: str, rows: pd.DataFrame, runs: pd.DataFrame, folder: Path):
    """The aggregates a table spec makes: the table itself (pivoted when ``pivot`` names a group
    column), and with ``ratio_to`` its means over the reference solver's (``<name>_ratio``)."""
    metrics = table["metrics"][scale] if isinstance(table["metrics"], dict) else table["metrics"]
    source = _table_source(table, rows, runs, folder)
    if source is None:
        return []
    subset = _select(source, table.get("where"))
    if subset.empty:
        return []
    on_rows = table.get("source", "rows") == "rows"
    subset_runs = _select(runs, table.get("where")) if on_rows and not runs.empty else pd.DataFrame()
    groups = [g for g in table["group"] if g in subset.columns]
    order = {"solver": SOLVER_ORDER, **(table.get("order") or {})}
    agg = aggregate(subset, groups, metrics, subset_runs if not subset_runs.empty else None,
                    _notes(subset_runs) if not subset_runs.empty else {}, order)
    if table.get("legend"):  # a table of other rows than images (e.g. one per tuning study) says what it shows
        agg.legend = table["legend"].strip()
    if table.get("plain"):  # values to read, not to rank: nothing bold
        agg.directions = {m: 0 for m in metrics}
    if table.get("pivot"):
        return [(table["name"], pivot(agg, table["pivot"], metrics[0]))]
    out = [(table["name"], agg)]
    if table.get("ratio_to"):
        out.append((f"{table['name']}_ratio", ratios(agg, "solver", table["ratio_to"])))
    if table.get("paired_to") and on_rows:
        out.append((f"{table['name']}_paired", paired(subset, groups, metrics, table["paired_to"],
                                                      level=table.get("paired_level", "solver"), order=order,
                                                      notes=_notes(subset_runs) if not subset_runs.empty else {})))
    return out


def _table_source(table: dict[str, Any], rows: pd.DataFrame, runs: pd.DataFrame, folder: Path) -> pd.DataFrame | None:
    source = table.get("source", "rows")
    if source == "rows":
        return rows
    if Path(source).stem == table["name"]:  # the table's own CSV would overwrite its source
        raise ConfigError(f"table {table['name']!r} reads {source}, the file it writes; rename the table or its source")
    path = folder / source
    return pd.read_csv(path) if path.is_file() else None


def _figure(spec: dict[str, Any], rows: pd.DataFrame, runs: pd.DataFrame, folder: Path) -> list[Path]:
    kind, stem = spec["kind"], folder / spec["name"]
    if kind not in FIGURES:
        raise ConfigError(f"figure {spec['name']!r}: unknown kind {kind!r}; kinds: {', '.join(FIGURES)}")
    if kind == "qualitative_grid":
        path = folder / f"{spec['name']}.npz"
        if not path.is_file():
            return []
        with np.load(path) as data:
            return fig.qualitative_grid(list(data["columns"]), data["images"].astype(np.float32) / 255,
                                        list(data["rows"]), stem)
    if kind == "posterior_projection":
        path = folder / f"{spec['name']}.npz"
        if not path.is_file():
            return []
        with np.load(path) as data:
            problems, solvers = [str(v) for v in data["problems"]], [str(v) for v in data["solvers"]]
            points = {(p, s): data[f"{p}__{s}"] for p in problems for s in ["exact", *solvers]}
        return fig.posterior_projection(points, problems, solvers, stem)
    if kind in ("tuning_history", "tuning_importance"):
        path = folder / "tuning_trials.csv.gz"
        if not path.is_file():
            return []
        frame = _select(pd.read_csv(path), spec.get("where"))
        if frame.empty:
            return []
        studies = tuning.studies_from_trials(frame, SOLVER_ORDER)
        draw = fig.tuning_history if kind == "tuning_history" else fig.tuning_importance
        return draw(studies, stem)
    if kind == "memory_over_steps":
        path = folder / "memory.csv.gz"
        if not path.is_file():
            return []
        return fig.memory_over_steps(_select(pd.read_csv(path), spec.get("where")), stem)
    frame = rows
    if spec.get("source", "rows") != "rows":
        path = folder / spec["source"]
        if not path.is_file():
            return []
        frame = pd.read_csv(path)
    frame = _select(frame, spec.get("where"))
    frame = frame[frame["status"] == "ok"] if "status" in frame else frame
    if frame.empty:
        return []
    if kind == "tradeoff":
        x = next((m for m in spec["x"] if m in frame and frame[m].notna().any()), None)
        if x is None:
            return []
        return fig.tradeoff_curve(frame, x, spec["y"], spec["parameter"], spec.get("series"), stem,
                                  bool(spec.get("log_x", False)), spec.get("reference_x"))
    if kind == "ablation_bars":
        return fig.ablation_bars(frame, spec["parameter"], spec["value"], spec.get("series"), stem)
    if kind == "lines":  # x read from a column, optionally its number by a regex (gmm_grid80 -> 80)
        x = frame[spec["x"]]
        x = x.astype(str).str.extract(spec["x_pattern"])[0] if spec.get("x_pattern") else x
        frame = frame.assign(_x=pd.to_numeric(x)).dropna(subset=["_x", spec["y"]])
        return fig.lines(frame, "_x", spec["y"], spec["series"], spec.get("panels"), stem,
                         spec.get("x_label", spec["x"]), bool(spec.get("log_x")), bool(spec.get("log_y")))
    if kind == "cost_bars":
        return fig.cost_bars(frame, spec["metrics"], spec.get("reference", "reddiff"), stem)
    return fig.cost_scaling(frame, spec["x"], spec["y"], stem)


def write_readme(study: str) -> Path:
    """``experiments/<study>/README.md``: the spec's description, and per scale its note, tables and
    figures as built (markdown tables embedded, figures linked)."""
    spec = load_spec(study)
    lines = [f"# {spec['title']}", "", spec.get("description", "").strip(), ""]
    for scale in SCALES:
        plan = spec["scales"].get(scale)
        if plan is None:
            continue
        folder = data_dir(study, scale)
        lines += [f"## {scale.capitalize()} scale", "", plan.get("note", "").strip(), ""]
        if plan.get("findings"):  # what the committed rows show, written by whoever ran the study
            lines += ["**Findings.**", "", plan["findings"].strip(), ""]
        lines += ["Sweeps (`python -m reddiff_bench -m ...`):", ""]
        lines += [f"- tune `{name}`: `python -m reddiff_bench tune {' '.join(overrides)}`"
                  for name, overrides in (plan.get("tune") or {}).items()]
        lines += [f"- `{name}`: `{' '.join(overrides)}`" for name, overrides in (plan.get("sweeps") or {}).items()]
        lines += [f"- `{name}` (with `FULL=1`): `{' '.join(overrides)}`"
                  for name, overrides in (plan.get("full_sweeps") or {}).items()]
        if plan.get("bench") is not None:
            lines += [f"- bench: `python -m reddiff_bench bench {' '.join(plan['bench'])}`"]
        lines.append("")
        if not (folder / "rows.csv.gz").is_file():
            lines += [f"Not run yet: `make paper SCALE={scale}` (see the top-level README).", ""]
            continue
        for table in spec.get("tables") or []:
            caption = table.get("caption") or table["name"]
            for name, title in ((table["name"], caption),
                                (f"{table['name']}_ratio", f"{caption}: ratios to {table.get('ratio_to')}"),
                                (f"{table['name']}_paired", f"{caption.rstrip('.')}: paired differences to "
                                                            f"{table.get('paired_to')}")):
                path = folder / f"{name}.md"
                if path.is_file():
                    lines += [f"### {title}", "", path.read_text().rstrip(), "",
                              f"LaTeX: [`{scale}/{name}.tex`]({scale}/{name}.tex); numbers: "
                              f"[`{scale}/{name}.csv`]({scale}/{name}.csv).", ""]
        for figure in spec.get("figures") or []:
            path = folder / f"{figure['name']}.png"
            if path.is_file():
                lines += [f"### {figure.get('caption') or figure['name']}", "",
                          f"![{figure['name']}]({scale}/{figure['name']}.png)", ""]
        lines += [f"Per-image rows: [`{scale}/rows.csv.gz`]({scale}/rows.csv.gz); one summary per run: "
                  f"[`{scale}/runs.csv`]({scale}/runs.csv).", ""]
    path = EXPERIMENTS / study / "README.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path

