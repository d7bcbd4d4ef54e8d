"""Equal-budget tuning on the validation split: ``python -m reddiff_bench tune +experiment=NAME``.

One optuna study per (objective, model, task, solver), in
``<tune.dir>/<objective>/<model>/<task>/<solver>/``: its
journal (``journal.log``, optuna's file storage: appends under a file lock, safe for several
processes) and one run directory per trial (``trials/<number>``). Every study gets the same
``tune.trials`` trials on the same ``tune.images`` validation images (``dataset.split=validation``,
which shares no image with the test split), and trial 0 replays the solver's own settings, so a
tuned setting never does worse than the published one on validation.

A trial is a normal run (``run.pipeline.run``): it resumes, logs (one W&B group per study) and
runs under whatever launcher started the worker. Workers (Hydra jobs: ``tune.worker``) share a
study through its journal; each trial is held with a lock (``trials/<n>/trial.lock``) by the process
solving it. The lock is taken in the same critical section (``study.lock``) as the trial is asked
for, so a trial in state RUNNING whose lock is free belongs to a worker that died (kill -9, a
preempted node): the next worker adopts it, resumes its run directory (its finished images are
kept) and tells its value. A finished trial is never run again; the study stops at ``tune.trials``
finished trials, whatever the number of workers.

When a study has all its trials, ``finish`` writes ``trials.csv``, ``cost.json`` (trials, images,
NFE, device-hours), the optimisation-history and parameter-importance figures, and the best
settings into ``<tune.conf_dir>/<model>/<task>.yaml`` (``+tuned=<model>/<task>`` on any run;
``<task>__<objective>.yaml`` for an objective other than PSNR).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from filelock import FileLock, Timeout
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.storages.journal import JournalFileBackend

from ..errors import ConfigError
from ..files import atomic_write_text
from ..metrics.registry import METRICS
from ..run.identity import config_hash, identity
from ..run.pipeline import run
from ..run.settings import CONF_DIR, TUNED_GROUP, choices, resolved
from ..run.store import read_rows
from . import figures as fig
from .report import sweep_problems

log = logging.getLogger(__name__)

DEFAULT_OBJECTIVE = "psnr"
POSTERIOR = "posterior"  # the objective that picks the distance to the exact posterior by the solver's estimate
POSTERIOR_METRIC = {"point": "mse_to_post_mean", "sample": "sw_to_posterior"}
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)


# --- search spaces --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One tunable setting: the config ``path`` it sets and its range."""

    name: str
    path: str
    low: float
    high: float
    log: bool = False
    int: bool = False

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.int:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high


@dataclass(frozen=True)
class SearchSpace:
    solver: str
    estimate: str  # point | sample
    params: tuple[Param, ...]

    @property
    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {p.name: p.distribution() for p in self.params}


def search_space(solver: str, with_cost: bool = False, folder: str | Path | None = None) -> SearchSpace:
    """``<folder>/<solver>.yaml`` (default ``conf/search``): its ``params``, and its ``cost``
    params when the objective includes a cost."""
    path = Path(folder or CONF_DIR / "search") / f"{solver}.yaml"
    if not path.is_file():
        raise ConfigError(f"no search space for solver {solver!r}: {path} does not exist. Write one (see "
                          f"conf/search/reddiff.yaml for the format).")
    spec = yaml.safe_load(path.read_text()) or {}
    estimate = spec.get("estimate")
    if estimate not in POSTERIOR_METRIC:
        raise ConfigError(f"{path}: estimate must be point or sample, got {estimate!r}")
    params = []
    for section in ("params", "cost") if with_cost else ("params",):
        for name, entry in (spec.get(section) or {}).items():
            try:
                param = Param(name, str(entry["path"]), float(entry["low"]), float(entry["high"]),
                              bool(entry.get("log", False)), bool(entry.get("int", False)))
            except (KeyError, TypeError, ValueError) as err:
                raise ConfigError(f"{path}: {section}.{name} needs path, low, high (and optionally log, int): "
                                  f"{err}") from None
            if not param.low < param.high or (param.log and param.low <= 0):
                raise ConfigError(f"{path}: {section}.{name}: low must be below high (and above 0 on a log scale)")
            params.append(param)
    return SearchSpace(solver, estimate, tuple(params))


# --- objectives -----------------------------------------------------------------------------------

def objectives(objective: Any, estimate: str) -> list[str]:
    """The row metrics a study optimises, in order (``posterior`` resolved by the solver's estimate)."""
    names = list(objective) if OmegaConf.is_list(objective) or isinstance(objective, (list, tuple)) else [objective]
    out = []
    for name in map(str, names):
        name = POSTERIOR_METRIC[estimate] if name == POSTERIOR else name
        if name not in METRICS or METRICS[name].direction == 0 or METRICS[name].run_level:
            usable = sorted(k for k, m in METRICS.items() if m.direction != 0 and m.level == "image")
            raise ConfigError(f"tune.objective: {name!r} is not a per-image metric with a direction; use one of "
                              f"{', '.join(usable)}, or {POSTERIOR}")
        out.append(name)
    return out


def directions(metrics: list[str]) -> list[str]:
    return ["maximize" if METRICS[m].direction > 0 else "minimize" for m in metrics]


def has_cost(metrics: list[str]) -> bool:
    return any(m in ("nfe", "vjp", "seconds", "peak_mem_mb") for m in metrics)


# --- one study --------------------------------------------------------------------------------------

@dataclass
class Study:
    """The study of one (model, task, solver) under ``folder``."""

    folder: Path
    key: str  # model/task/solver
    space: SearchSpace
    metrics: list[str]
    trials: int
    label: str = DEFAULT_OBJECTIVE  # the objective as written: names the folder and the tuned config

    @property
    def journal(self) -> Path:
        return self.folder / "journal.log"

    def trial_dir(self, number: int) -> Path:
        return self.folder / "trials" / f"{number:04d}"

    def load(self, seed: int = 0, startup_trials: int = 5) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study loaded
        self.folder.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(self.journal)))
        return optuna.create_study(study_name=self.key, storage=storage, directions=directions(self.metrics),
                                   sampler=sampler(seed, startup_trials), load_if_exists=True)


def sampler(seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    """TPE (multivariate; constant liar: a running trial counts as a bad one, so that parallel
    workers spread out). Seeded anew for each trial from (seed, trial number), so that workers in
    other processes never draw the same settings and one worker's study is reproducible."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, multivariate=True,
                                      constant_liar=True)


def study_of(cfg: DictConfig) -> Study:
    """The study a worker job of ``cfg`` serves."""
    tune = cfg.tune
    picked = choices(cfg)
    solver = str(picked.get("solver"))
    model = str(picked.get("model"))
    metrics0 = objectives(tune.objective, "point")  # validated before the search space is read
    space = search_space(solver, has_cost(metrics0), tune.get("search_dir"))
    metrics = objectives(tune.objective, space.estimate)
    trials = int(tune.trials)
    if trials < 1:
        raise ConfigError(f"tune.trials must be at least 1, got {trials}")
    key = f"{model}/{cfg.task.name}/{solver}"
    label = objective_label(tune.objective)
    return Study(Path(str(tune.dir)) / label / key, key, space, metrics, trials, label)


def objective_label(objective: Any) -> str:
    """The objective as written (``psnr``, ``posterior``, ``psnr-nfe``): it names the studies'
    folder and, unless it is the default ``psnr``, the tuned config (``<task>__<label>.yaml``)."""
    names = list(objective) if OmegaConf.is_list(objective) or isinstance(objective, (list, tuple)) else [objective]
    return "-".join(map(str, names))


def trial_config(cfg: DictConfig, study: Study, params: dict[str, Any]) -> DictConfig:
    """A trial's run: the experiment's config on the validation split, with ``params`` set."""
    tune = cfg.tune
    trial = copy.deepcopy(cfg)
    by_name = {p.name: p for p in study.space.params}
    with open_dict(trial):
        for name, value in params.items():
            OmegaConf.update(trial, by_name[name].path, value, merge=False)
        count_key = "num_problems" if "num_problems" in trial.dataset else "num_images"
        test_size = tune.get("test_images") or cfg.dataset.get(count_key)
        trial.dataset.split = "validation"
        trial.dataset[count_key] = int(tune.images)
        if "test_images" in trial.dataset and test_size is not None:
            trial.dataset.test_images = int(test_size)
        sampler_metric = "sw_to_posterior" in study.metrics or "sw1_to_posterior" in study.metrics
        trial.n_samples = int(tune.samples) if sampler_metric else 1
        trial.reference_metrics = any("post" in m or m == "dist_to_nearest_mode" for m in study.metrics)  # costly
        trial.metrics.fid = False  # run-level metrics never steer a trial
        trial.metrics.top1 = "top1_correct" in study.metrics
        if "lpips" not in study.metrics and "lpips_diversity" not in study.metrics:
            trial.metrics.lpips = "none"
        trial.save_outputs = False
        trial.save_measurements = False
        trial.grid_images = 0
        trial.progress = False
        trial.study.name = f"tune-{cfg.experiment_name}"
        trial.study.sweep = study.key
        if "group" in trial.logger:
            trial.logger.group = f"tune-{cfg.experiment_name}-{study.key.replace('/', '-')}"
    return trial


def trial_values(rows: pd.DataFrame, metrics: list[str]) -> list[float] | None:
    """The mean of each metric over the trial's images; None when an image diverged or a metric is
    missing (a trial that fails: it counts toward the budget, TPE learns to avoid it)."""
    if rows.empty or (rows["status"] != "ok").any():
        return None
    values = []
    for m in metrics:
        if m not in rows or rows[m].isna().any():
            return None
        values.append(float(rows[m].mean()))
    return values if all(math.isfinite(v) for v in values) else None


def defaults(cfg: DictConfig, study: Study) -> dict[str, Any]:
    """The solver's own settings of ``cfg`` (published or default) that lie in the search space:
    trial 0 replays them."""
    out = {}
    for p in study.space.params:
        value = OmegaConf.select(cfg, p.path, default=None)
        if p.contains(value):
            out[p.name] = int(value) if p.int else float(value)
    return out


def work(cfg: DictConfig) -> Study:
    """One worker on the study of ``cfg``: adopt trials whose worker died, ask for new ones until
    the study has ``tune.trials`` finished (or running) trials, run and tell each; then ``finish``."""
    study = study_of(cfg)
    tune = cfg.tune
    handle = study.load(int(tune.seed), int(tune.startup_trials))
    guard = FileLock(str(study.folder / "study.lock"))
    with guard:
        check_owner(cfg, study)
    first = defaults(cfg, study)
    while True:
        with guard:  # asking and taking the trial's lock are one step for every worker
            handle.sampler = sampler(int(tune.seed) * 100_003 + len(handle.get_trials(deepcopy=False)),
                                     int(tune.startup_trials))
            claim = _claim(study, handle, first)
        if claim is None:
            break
        number, params, lock = claim
        try:
            _run_trial(cfg, study, handle, number, params)
        finally:
            lock.release()
    finish(study, handle, cfg)
    return study


def check_owner(cfg: DictConfig, study: Study) -> None:
    """A study folder serves one configuration (the experiment's, before any tuned setting):
    recorded in ``study.json`` by its first worker; a job of another configuration that maps to the
    same folder (e.g. a sweep over dataset.dim, which the folder's name does not hold) is refused."""
    ident = config_hash(identity(resolved(cfg)))
    record = {"config_hash": ident, "objective": study.metrics, "images": int(cfg.tune.images),
              "samples": int(cfg.tune.samples), "test_images": cfg.tune.get("test_images")}
    path = study.folder / "study.json"
    if path.is_file():
        known = json.loads(path.read_text())
        if known.get("config_hash") != ident:
            raise ConfigError(f"{study.folder} already holds the tuning of another configuration of {study.key} (its "
                              f"config hash {known.get('config_hash')}, this one {ident}): a sweep over a setting the "
                              f"folder's name does not hold? Give each its own tune.dir.")
        changed = [k for k in ("images", "samples", "test_images") if known.get(k) != record[k]]
        if changed:  # its finished trials were scored on other images: one study, one objective
            raise ConfigError(f"{study.folder} was tuned with " + ", ".join(f"tune.{k}={known.get(k)}" for k in changed)
                              + "; run it with the same values (only tune.trials may grow), or give it another "
                                "tune.dir.")
        return
    atomic_write_text(path, json.dumps(record, indent=1))


def _claim(study: Study, handle: optuna.Study, first: dict[str, Any]) -> tuple[int, dict[str, Any], FileLock] | None:
    trials = handle.get_trials(deepcopy=False)
    for t in trials:  # a RUNNING trial whose lock is free: its worker died; adopt it
        if t.state == optuna.trial.TrialState.RUNNING:
            lock = _trial_lock(study, t.number)
            if lock is not None:
                log.warning("trial %d of %s was left running by a worker that stopped: resuming it", t.number,
                            study.key)
                return t.number, dict(t.params), lock
    if sum(t.state in FINISHED or t.state == optuna.trial.TrialState.RUNNING for t in trials) >= study.trials:
        return None
    if not trials and first:
        handle.enqueue_trial(first, skip_if_exists=True)  # trial 0: the solver's own settings
    trial = handle.ask(study.space.distributions)
    lock = _trial_lock(study, trial.number)
    if lock is None:  # cannot happen: the trial is new and we hold the study lock
        raise RuntimeError(f"trial {trial.number} of {study.key} is locked by another process")
    return trial.number, dict(trial.params), lock


def _trial_lock(study: Study, number: int) -> FileLock | None:
    folder = study.trial_dir(number)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / "trial.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock


def _run_trial(cfg: DictConfig, study: Study, handle: optuna.Study, number: int, params: dict[str, Any]) -> None:
    folder = study.trial_dir(number)
    atomic_write_text(folder / "params.json", json.dumps(params, sort_keys=True))
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    print(f"[tune] {study.key} trial {number}: {shown or '(no settings to tune)'}", flush=True)
    start = time.perf_counter()
    try:
        outcome = run(trial_config(cfg, study, params), folder)
    except ConfigError as err:  # a setting the solver refuses: a failed trial, the study goes on
        print(f"[tune] {study.key} trial {number} refused: {err}", file=sys.stderr)
        handle.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        return
    finally:  # each attempt's wall time (a resumed trial has several): the tuning cost
        with open(folder / "wall_seconds.txt", "a") as f:
            f.write(f"{time.perf_counter() - start:.3f}\n")
    if outcome is None:  # a rank other than 0 of a torchrun worker
        return
    values = trial_values(outcome.rows, study.metrics)
    if values is None:
        print(f"[tune] {study.key} trial {number}: a diverged image or a missing {', '.join(study.metrics)}; "
              f"the trial fails", file=sys.stderr)
        handle.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        return
    handle.tell(number, values if len(values) > 1 else values[0], skip_if_finished=True)
    print(f"[tune] {study.key} trial {number}: " + ", ".join(f"{m} {v:.4g}" for m, v in zip(study.metrics, values)),
          flush=True)


# --- results --------------------------------------------------------------------------------------

def trials_frame(study: Study, handle: optuna.Study) -> pd.DataFrame:
    """One row per trial: its number, state, settings, objective values and cost (from its rows)."""
    records = []
    for t in handle.get_trials(deepcopy=False):
        record: dict[str, Any] = {"trial": t.number, "state": t.state.name,
                                  "published": "fixed_params" in t.system_attrs}  # enqueued: the solver's own
        record.update({f"param.{k}": v for k, v in t.params.items()})
        for m, v in zip(study.metrics, t.values or [None] * len(study.metrics)):
            record[m] = v
        rows_path = study.trial_dir(t.number) / "metrics.csv"
        if rows_path.is_file():
            rows = read_rows(rows_path)
            record.update(images=len(rows), nfe=float(rows["nfe"].sum()) if "nfe" in rows else None,
                          seconds=float(rows["seconds"].sum()) if "seconds" in rows else None,
                          validation_ids=" ".join(map(str, rows["image_id"])),
                          split=",".join(sorted(set(map(str, rows.get("split", pd.Series(["?"])))))))
        wall = study.trial_dir(t.number) / "wall_seconds.txt"
        if wall.is_file():
            record["wall_seconds"] = sum(float(v) for v in wall.read_text().split())
        records.append(record)
    return pd.DataFrame(records)


def best_trial(study: Study, handle: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best finished trial (multi-objective: the Pareto front's best in the first objective)."""
    complete = [t for t in handle.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    front = handle.best_trials if len(study.metrics) > 1 else complete
    sign = 1 if directions(study.metrics)[0] == "maximize" else -1
    return max(front, key=lambda t: (sign * t.values[0], -t.number))


def finish(study: Study, handle: optuna.Study, cfg: DictConfig) -> dict[str, Any] | None:
    """Once the study has all its trials: its table, cost, figures and tuned settings (idempotent:
    every worker that ends may write them; the files are replaced atomically)."""
    trials = handle.get_trials(deepcopy=False)
    if sum(t.state in FINISHED for t in trials) < study.trials:
        return None
    frame = trials_frame(study, handle)
    atomic_write_text(study.folder / "trials.csv", frame.to_csv(index=False, float_format="%.6g"))
    best = best_trial(study, handle)
    total = {k: float(frame[k].sum()) if k in frame else 0.0 for k in ("images", "nfe", "seconds", "wall_seconds")}
    cost = {"trials": int(len(frame)), "failed": int((frame["state"] == "FAIL").sum()),
            "images_per_trial": int(cfg.tune.images), "images_solved": int(total["images"]), "nfe": total["nfe"],
            "solve_seconds": total["seconds"], "wall_seconds": total["wall_seconds"],
            "device_hours": total["wall_seconds"] / 3600}  # the device is held for the trial's whole run
    atomic_write_text(study.folder / "cost.json", json.dumps(cost, indent=1))
    draw_figures(study, handle)
    if best is None:
        print(f"[tune] {study.key}: every trial failed; no tuned settings", file=sys.stderr)
        return None
    ids = str(frame.loc[frame["trial"] == best.number, "validation_ids"].iloc[0]).split() \
        if "validation_ids" in frame else []
    entry = {"settings": {p.path: best.params[p.name] for p in study.space.params if p.name in best.params},
             "objective": study.metrics if len(study.metrics) > 1 else study.metrics[0],
             "value": [float(v) for v in best.values] if len(study.metrics) > 1 else float(best.values[0]),
             "trial": best.number, "trials": study.trials, "validation_images": len(ids), "validation_ids": ids,
             "rows_date": time.strftime("%Y-%m-%d", time.gmtime(_rows_time(study, best.number))),
             "study": study.key, "cost": cost}
    write_tuned(cfg, study, entry)
    return entry


def _rows_time(study: Study, number: int) -> float:
    path = study.trial_dir(number) / "metrics.csv"
    return path.stat().st_mtime if path.is_file() else time.time()


def write_tuned(cfg: DictConfig, study: Study, entry: dict[str, Any]) -> Path:
    """The best settings of ``study`` into ``<conf_dir>/<model>/<task>.yaml`` (one file per model
    and task, one entry per solver), under a lock in ``tune.dir`` (studies of other solvers write
    the same file)."""
    model, task, solver = study.key.split("/")
    folder = Path(str(cfg.tune.get("conf_dir") or CONF_DIR / TUNED_GROUP))
    name = task if study.label == DEFAULT_OBJECTIVE else f"{task}__{study.label}"
    path = folder / model / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(str(cfg.tune.dir)) / "tuned.lock")):  # the command's workers share tune.dir, not conf/
        spec = yaml.safe_load(path.read_text()) if path.is_file() else None
        block = (spec or {}).get("tuned") or {"model": model, "task": task, "solvers": {}}
        block["solvers"][solver] = entry
        block["solvers"] = dict(sorted(block["solvers"].items()))
        header = (f"# @package _global_\n# Settings tuned on the validation split by python -m reddiff_bench tune "
                  f"(reddiff_bench/study/tuning.py);\n# any run of model {model} on task {task} takes them with "
                  f"+tuned={model}/{name}. Written by the tuner: re-run it rather than edit.\n")
        atomic_write_text(path, header + yaml.safe_dump({"tuned": block}, sort_keys=False, width=110))
    return path


def studies_from_trials(frame: pd.DataFrame, order: list[str]) -> list[tuple[str, optuna.Study, str]]:
    """In-memory optuna studies rebuilt from committed trial rows (``tuning_trials.csv.gz``: one
    study per solver of ``frame``, in ``order``), for the figures that ``make tables`` redraws:
    ``(solver, study, objective label)``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study rebuilt
    out = []
    solvers = sorted(frame["solver"].unique(), key=lambda s: (order.index(s) if s in order else len(order), s))
    for solver in solvers:
        rows = frame[frame["solver"] == solver].sort_values("trial")
        label = str(rows["objective"].iloc[0])
        names = label.split("-")
        space = search_space(solver, has_cost(objectives(names, "point")))
        metrics = objectives(names, space.estimate)
        handle = optuna.create_study(directions=directions(metrics), study_name=solver,
                                     sampler=optuna.samplers.RandomSampler(seed=0))
        distributions = space.distributions
        for _, row in rows.iterrows():
            params = {name: (int(row[f"param.{name}"]) if isinstance(dist, optuna.distributions.IntDistribution)
                             else float(row[f"param.{name}"]))
                      for name, dist in distributions.items() if pd.notna(row.get(f"param.{name}"))}
            complete = row["state"] == "COMPLETE"
            handle.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: distributions[k] for k in params},
                user_attrs={"published": bool(row.get("published", False))},
                values=[float(row[m]) for m in metrics] if complete else None,
                state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.FAIL))
        out.append((solver, handle, metrics[0]))
    return out


def draw_figures(study: Study, handle: optuna.Study) -> None:
    """The study's optimisation history, parameter importances and (several objectives) Pareto
    front, as PNG and PDF in its folder."""
    entry = [(study.key.rsplit("/", 1)[-1], handle, study.metrics[0])]
    if not any(t.values for t in handle.get_trials(deepcopy=False)):
        return
    fig.tuning_history(entry, study.folder / "history")
    if len(study.space.params) > 1:
        fig.tuning_importance(entry, study.folder / "importance")
    if len(study.metrics) > 1:
        fig.pareto_front(handle, study.metrics, study.folder / "pareto")


# --- the worker job and the command's end -----------------------------------------------------------

def worker_job(cfg: DictConfig) -> None:
    """The Hydra job of the tune command: one worker of one study."""
    study = work(cfg)
    path = study.folder / "trials.csv"
    if path.is_file():
        frame = pd.read_csv(path)
        done = frame[frame["state"] == "COMPLETE"]
        print(f"[tune] {study.key}: {len(frame)} trials ({len(done)} complete) in {study.folder}", flush=True)


class TuningReport(Callback):
    """The tune command's sweep callback: the sweep's preflight (data, checkpoints, devices), and at
    its end one line per study: its best value, settings and cost."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        problems = sweep_problems(config)
        if problems:
            print("error: the tuning cannot run, no worker was started:\n  " + "\n  ".join(problems), file=sys.stderr)
            raise SystemExit(2)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        root = Path(str(config.tune.dir))
        lines = []
        for path in sorted(root.glob("*/*/*/*/trials.csv")):
            frame = pd.read_csv(path)
            cost = json.loads((path.parent / "cost.json").read_text()) if (path.parent / "cost.json").is_file() else {}
            done = frame[frame["state"] == "COMPLETE"]
            lines.append(f"  {path.parent.relative_to(root)}: {len(done)}/{len(frame)} trials complete, "
                         f"{cost.get('images_solved', 0)} images, {cost.get('nfe', 0):.0f} NFE, "
                         f"{cost.get('wall_seconds', 0):.0f} s")
        if lines:
            print("tuning studies:\n" + "\n".join(lines), flush=True)

