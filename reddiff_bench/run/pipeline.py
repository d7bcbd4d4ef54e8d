"""One run: every image of a dataset through one task and one solver (the flow of a run).

``run`` reads top to bottom: check the settings, build the run's pieces into a :class:`RunContext`,
take the run directory, solve the images that have no row yet batch by batch (``solve_batch``:
load, measure, solve, score), then report from what is on disk (``report``). Each step is one call
away; the store (``store``) makes re-running a command resume it, ``outputs`` keeps each image's
files, ``distributed`` shards the images over torchrun's processes, ``launch`` gives a sweep job
its GPU slot.

Randomness: three generators per image, seeded from (run seed, stream, task, image id):
``artifacts`` (mask, kernel), ``noise`` (measurement noise), ``solver``. The first two do not
depend on the solver, so every solver of a sweep sees the same ``y``.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from tqdm import tqdm

from ..diffusion import SampleStream, make_generator
from ..errors import ConfigError
from ..files import atomic_write_text
from ..metrics import data_consistency, fidelity
from ..metrics.cost import CostMeter
from ..metrics.fid import GROUND_TRUTH, read_reference
from ..metrics.posterior import posterior_metrics
from ..metrics.suite import MetricSuite
from ..operators import Operator
from ..priors.checkpoints import REGISTRY, resolve_checkpoint
from ..tasks import Task, tensor_hash
from . import distributed
from .grid import measurement_image, save_grid
from .identity import identity
from .launch import job_device
from .loggers import NullLogger
from .outputs import has_output, load_estimate, load_measurements, save_measurement, save_output, task_signature
from .profile import MemoryProfile
from .references import folder_reference
from .settings import apply_tuned, check_run_settings, check_spaces, resolve_device, resolved
from .store import DATASET_IDS, RunOwnership, RunStore

log = logging.getLogger(__name__)


def instantiate_group(node: DictConfig, group: str) -> Any:
    """Instantiate a config group, turning errors raised by our own checks into clean messages."""
    try:
        return instantiate(node, _convert_="all")
    except Exception as err:  # Hydra wraps errors in InstantiationException; find ours
        cause: BaseException | None = err
        while cause is not None:
            if isinstance(cause, ConfigError):
                raise cause from None
            cause = cause.__cause__
        raise ConfigError(f"could not build the {group!r} config ({node.get('_target_', '?')}): {err}") from err


def missing_inputs(cfg: DictConfig) -> list[str]:
    """What a run of ``cfg`` lacks before any work, all of it at once: its data (the dataset is
    built: image folders are listed), and a known checkpoint that is neither here nor downloadable
    (a download is tried once, here, so that the jobs after it find the file)."""
    problems = []
    try:
        instantiate_group(cfg.dataset, "dataset")
    except ConfigError as err:
        problems.append(str(err))
    problems += reference_problems(cfg)
    model = cfg.model
    if "checkpoint_name" in model and str(model.get("_target_", "")).endswith(".adm_prior"):
        try:
            resolve_checkpoint(REGISTRY[model.checkpoint_name], model.checkpoint, model.checkpoint_dir,
                               bool(model.download))
        except (ConfigError, KeyError) as err:
            problems.append(str(err))
    return problems


def reference_problems(cfg: DictConfig) -> list[str]:
    """What is wrong with the FID/KID reference files before any work: absent (unless
    ``reference_fallback``), or not a statistics or features file."""
    metrics, problems = cfg.get("metrics", {}), []
    if not metrics.get("fid", False):
        return problems
    for which in ("fid", "kid"):
        spec = metrics.get(f"{which}_reference", GROUND_TRUTH) or GROUND_TRUTH
        path = Path(str(spec)).expanduser()
        if spec == GROUND_TRUTH or path.is_dir():
            continue
        if not path.exists():
            if not metrics.get("reference_fallback", False):
                problems.append(f"metrics.{which}_reference: {path} does not exist. Make it with python -m "
                                f"reddiff_bench fid-stats IMAGE_DIR --out FILE, or set metrics.{which}_reference="
                                f"{GROUND_TRUTH}.")
            continue
        try:
            read_reference(path)
        except ConfigError as err:
            problems.append(f"metrics.{which}_reference: {err}")
    return problems


@dataclass
class RunContext:
    """What every image of one run shares: its settings, its built pieces and where it writes."""

    cfg: DictConfig
    resolved: dict[str, Any]  # the config with every interpolation resolved (config.yaml)
    run_dir: Path
    dataset: Any
    ids: list[str]  # every image id of the dataset, in its order
    task: Task
    solver: Any
    store: RunStore
    device: torch.device
    processes: distributed.Context
    slot: int | None = None  # the GPU slot of a gpus-launcher job
    logger: Any = field(default_factory=NullLogger)
    prior: Any = None  # built when there are images to solve
    suite: MetricSuite | None = None
    profile: MemoryProfile | None = None

    @property
    def order(self) -> dict[str, int]:
        return {image_id: index for index, image_id in enumerate(self.ids)}

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def n_samples(self) -> int:
        return int(self.cfg.n_samples)

    @property
    def skip_unreadable(self) -> bool:
        return bool(getattr(self.dataset, "skip_unreadable", False))

    def run_ids(self, model: str | None) -> dict[str, Any]:
        """The columns that say which run a row belongs to."""
        return dict(run=f"{self.run_dir.parent.name}/{self.run_dir.name}", solver=self.cfg.solver_name,
                    task=self.task.name, dataset=self.dataset.name, split=getattr(self.dataset, "split", "test"),
                    sigma_y=self.task.sigma_y, seed=self.seed, model=model)

    def provenance(self) -> dict[str, Any]:
        """Which process solved a row."""
        slot = {"gpu_slot": self.slot} if self.slot is not None else {}
        return dict(rank=self.processes.rank, world_size=self.processes.world_size, **slot)

    def metric_suite(self) -> MetricSuite:
        folder = partial(folder_reference, size=int(getattr(self.dataset, "size", 256)),
                         cache_dir=self.cfg.paths.cache_dir, device=self.device)
        return MetricSuite(**OmegaConf.to_container(self.cfg.metrics, resolve=True), device=self.device,
                           cache_dir=self.cfg.paths.cache_dir, labels=getattr(self.dataset, "labels", None),
                           dataset_key=json.dumps(self.resolved.get("dataset"), sort_keys=True, default=str),
                           folder_reference=folder)


@dataclass
class RunOutcome:
    """What a finished run returns (rank 0): its summary and the rows of the dataset's images."""

    summary: dict[str, Any]
    rows: pd.DataFrame


def run(cfg: DictConfig, run_dir: Path) -> RunOutcome | None:
    """Run (or resume) the configuration ``cfg`` into ``run_dir``. Rank 0 returns the outcome; the
    other ranks of a distributed run return None."""
    torch.manual_seed(0)  # nothing should use the global generator; make any slip reproducible
    cfg = apply_tuned(cfg)
    check_run_settings(cfg)
    device = resolve_device(cfg.device)
    slot = None
    if _hydra_choices().get("hydra/launcher") == "gpus":
        device, slot = job_device(Path(HydraConfig.get().sweep.dir) / ".gpu_slots", cfg.launch.get("devices"), device)
    processes = distributed.from_environment(device)
    try:
        context = make_context(cfg, Path(run_dir), processes.device(device), processes, slot)
        return run_context(context)
    finally:
        processes.close()


def make_context(cfg: DictConfig, run_dir: Path, device: torch.device, processes: distributed.Context,
                 slot: int | None = None) -> RunContext:
    """Build the dataset, task and solver of ``cfg`` (the prior waits until there is work)."""
    problems = reference_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    check_spaces(cfg, cfg.get("solver_name"), _hydra_choices().get("model"))
    dataset = instantiate_group(cfg.dataset, "dataset")
    task: Task = instantiate_group(cfg.task, "task")
    solver = instantiate_group(cfg.solver, "solver")
    config = resolved(cfg)
    store = RunStore(run_dir, identity(config), processes.rank, processes.world_size)
    return RunContext(cfg, config, run_dir, dataset, dataset_ids(dataset), task, solver, store, device, processes,
                      slot)


def run_context(context: RunContext) -> RunOutcome | None:
    """Take the run directory, solve what is not done, report; the state records how it ended."""
    processes, store = context.processes, context.store
    ownership = RunOwnership(context.run_dir)
    refusal = None
    if processes.is_main:  # rank 0 owns the directory; the other ranks learn its verdict
        try:
            ownership.acquire()
            store.check_config()
        except ConfigError as err:
            refusal = str(err)
    refusal = processes.broadcast(refusal)
    if refusal is not None:
        raise ConfigError(refusal)
    try:
        if processes.is_main:
            atomic_write_text(context.run_dir / "config.yaml", OmegaConf.to_yaml(context.resolved))
            atomic_write_text(context.run_dir / DATASET_IDS, json.dumps(context.ids))
            store.set_state("running", images_total=len(context.ids))
        outcome = solve_and_report(context)
        if outcome is not None:
            store.set_state("complete", images_done=outcome.summary.get("num_images"))
        return outcome
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (errors.Interrupted): resumable, not failed
        if processes.is_main:
            store.set_state("interrupted", signal=getattr(err, "name", "SIGINT"))
            context.logger.finish(exit_code=getattr(err, "exit_status", 130))  # what was logged reaches the disk
        raise
    except BaseException as err:
        if processes.is_main:
            store.set_state("failed", error=f"{type(err).__name__}: {err}")
            context.logger.finish(exit_code=1)
        raise
    finally:
        ownership.release()


def _hydra_choices() -> dict[str, str]:
    if not HydraConfig.initialized():
        return {}
    return dict(HydraConfig.get().runtime.choices)


def dataset_ids(dataset) -> list[str]:
    """The dataset's image ids, refused when one repeats (ids key the rows and the seeds)."""
    ids = [dataset.image_id(i) for i in range(len(dataset))]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ConfigError(f"dataset {dataset.name!r} yields repeated image ids ({', '.join(repeated)}): ids key the "
                          f"rows and the seeds, so each image must appear once. Remove the duplicates.")
    return ids


def solve_and_report(context: RunContext) -> RunOutcome | None:
    """Every image of this process's share without a row, batch by batch; then rank 0 merges and
    reports."""
    cfg, store, processes = context.cfg, context.store, context.processes
    ids, order = context.ids, context.order
    store.load()
    todo = [i for i in processes.shard(range(len(ids))) if ids[i] not in store.done]
    if store.done and processes.is_main:
        log.info("resuming %s: %d of %d images already have rows", context.run_dir, len(store.done & set(ids)),
                 len(ids))
    if processes.is_main:
        context.logger = instantiate_group(cfg.logger, "logger")
    context.logger.start(context.run_dir, context.resolved,
                         name=f"{cfg.solver_name}-{context.task.name}-{context.dataset.name}", run_id=store.chash)
    if todo:
        prepare(context, todo)
        bar = tqdm(total=len(todo), desc=f"{cfg.solver_name} on {context.task.name}", unit="img",
                   disable=not cfg.progress or not processes.is_main, dynamic_ncols=True)
        batch_size = int(cfg.batch_size)
        fresh = not store.done  # the curves are the run's first batch's: a resumed attempt does not log a second set
        try:
            for batch_index, start in enumerate(range(0, len(todo), batch_size)):
                rows = solve_batch(context, todo[start : start + batch_size], first=fresh and batch_index == 0)
                store.append(rows, order)
                bar.update(len(rows))
                key = "psnr" if "psnr" in rows[-1] else "mse"
                done = [r[key] for r in store.new_rows if r["status"] == "ok" and key in r]
                if done:
                    bar.set_postfix({key: f"{sum(done) / len(done):.4g}"})
        finally:
            bar.close()
    processes.barrier()
    if not processes.is_main:
        return None
    if processes.distributed or store.has_rank_files():  # a torchrun run, or one resumed by a single process
        store.merge(order)
    else:
        store.write(order)
    return report(context)


def prepare(context: RunContext, todo: list[int]) -> None:
    """The prior, the metric suite, the output folders and the memory profile; then the checks
    that need the prior (``preflight``)."""
    cfg, processes = context.cfg, context.processes
    context.prior = instantiate_group(cfg.model, "model").to(context.device).eval()
    preflight(context, todo)
    context.suite = context.metric_suite()
    for folder in ("measurements", "outputs"):
        (context.run_dir / folder).mkdir(exist_ok=True)
    if cfg.profile.memory:
        name = "memory.csv" if processes.world_size == 1 else f"memory.rank{processes.rank}.csv"
        context.profile = MemoryProfile(context.run_dir, context.device, context.logger,
                                        bool(cfg.profile.memory_snapshot), name)


def preflight(context: RunContext, todo: list[int]) -> None:
    """Before any image is solved: the images fit the model, the solver can do the task, its step
    count fits the model's schedule."""
    cfg, dataset, task, solver, prior = context.cfg, context.dataset, context.task, context.solver, context.prior
    spaces = getattr(prior, "space", "pixel"), getattr(solver, "space", "pixel")
    if spaces[0] != spaces[1]:  # a custom model target the config check could not see
        raise ConfigError(f"solver {cfg.solver_name!r} is a {spaces[1]} solver and model {prior.name!r} a {spaces[0]} "
                          f"prior: choose a {spaces[0]} solver, or a {spaces[1]} model")
    steps, T = getattr(solver, "steps", None), prior.schedule.num_steps
    if steps is not None and steps > T:
        raise ConfigError(f"solver.steps must be an integer in 1..{T} for model {prior.name!r} (its schedule has "
                          f"{T} steps), got {steps}")
    start_t = getattr(solver, "start_t", None)
    if start_t is not None and start_t >= T:
        raise ConfigError(f"solver.start_t must be in 0..{T - 1} for model {prior.name!r}, got {start_t}")
    for index in todo:  # the first readable image of this run's share
        image_id, x, _ = load_image(dataset, index, context.skip_unreadable)
        if x is not None:
            break
    else:
        return  # every image is unreadable (and skipped): rows say so
    if tuple(x.shape) != tuple(prior.image_shape):
        raise ConfigError(
            f"dataset {dataset.name!r} yields images of shape {tuple(x.shape)}, but model {prior.name!r} "
            f"takes {tuple(prior.image_shape)}. Set dataset.size={prior.image_shape[-1]} (or choose a model for "
            f"that image size).")
    check = getattr(solver, "check", None)
    if check is not None:  # refuse an unsupported task before any work
        shape = tuple(x.shape)
        generator = make_generator(context.seed, "artifacts", task.name, image_id)
        probe = task.operator([task.sample_artifacts(shape, generator)], shape)
        try:
            if "sigma_y" in inspect.signature(check).parameters:  # solvers whose limits depend on the noise
                check(probe, sigma_y=task.sigma_y)
            else:
                check(probe)
        except ValueError as err:
            raise ConfigError(f"solver {cfg.solver_name!r} cannot solve task {task.name!r}: {err}") from err


def load_image(dataset, index: int, skip_unreadable: bool) -> tuple[str, Tensor | None, str]:
    """(image id, image or None, status): an unreadable file is skipped when the dataset says so."""
    try:
        image_id, x = dataset[index]
    except ConfigError as err:
        if not skip_unreadable:
            raise
        log.warning("%s", err)
        return dataset.image_id(index), None, "unreadable"
    if not bool(torch.isfinite(x).all()):
        raise ConfigError(f"image {image_id!r} of dataset {dataset.name!r} contains NaN or infinite values; "
                          f"fix or remove the file.")
    return image_id, x, "ok"


# --- one batch: load, measure, solve, score --------------------------------------------------------

@dataclass
class Measurement:
    """The measured batch: each image's artifacts, the batch operator, ``y``, each image's own
    operator (batch of one) and the hash of its artifacts and ``y``."""

    artifacts: list[dict[str, Tensor]]
    operator: Operator
    y: Tensor
    singles: list[Operator]
    hashes: list[str]


@dataclass
class Solved:
    """One image's solve: its samples (n_samples, ...) and its cost and diagnostics."""

    samples: Tensor
    seconds: float
    peak_mem_mb: float
    peak_mem_kind: str
    counts: dict[str, int]  # nfe, vjp and the autoencoder's passes (CallCounter.columns)
    diagnostics: dict[str, float]


def solve_batch(context: RunContext, indices: list[int], first: bool) -> list[dict[str, Any]]:
    """The rows of the images ``indices``: unreadable ones get a row that says so."""
    loaded = [load_image(context.dataset, i, context.skip_unreadable) for i in indices]
    model = context.prior.name
    rows = [{**context.run_ids(model), "image_id": image_id, "status": status, "config_hash": context.store.chash,
             **context.provenance()} for image_id, x, status in loaded if x is None]
    loaded = [(image_id, x) for image_id, x, _ in loaded if x is not None]
    if not loaded:
        return rows
    image_ids = [image_id for image_id, _ in loaded]
    x = torch.stack([x for _, x in loaded]).to(context.device)
    measured = measure(context, image_ids, x)
    solved = solve(context, image_ids, measured, first)
    return rows + [score(context, image_id, x[k : k + 1], measured, k, solved[k], len(image_ids))
                   for k, image_id in enumerate(image_ids)]


def measure(context: RunContext, image_ids: list[str], x: Tensor) -> Measurement:
    """Artifacts and ``y`` of each image: drawn from its own generators, or replayed from
    ``measurements_from``; saved under ``measurements/`` when asked."""
    cfg, task, device = context.cfg, context.task, context.device
    shape = tuple(x.shape[1:])
    signature = task_signature(context.resolved["task"])
    image_hashes = [tensor_hash({"x": x[k].cpu()}) for k in range(len(image_ids))]
    if cfg.get("measurements_from"):
        artifacts, y = load_measurements(Path(cfg.measurements_from), image_ids, signature, image_hashes)
        operator: Operator = task.operator(artifacts, shape).to(device)
        y = y.to(device)
    else:
        order = context.order
        artifacts = [task.sample_artifacts(shape, make_generator(context.seed, "artifacts", task.name, i),
                                           index=order[i]) for i in image_ids]
        operator = task.operator(artifacts, shape).to(device)
        y = task.measure(operator, x, [make_generator(context.seed, "noise", task.name, i) for i in image_ids])
    hashes = []
    for k, image_id in enumerate(image_ids):
        record = {**{f"artifact_{name}": t for name, t in artifacts[k].items()}, "y": y[k].cpu()}
        hashes.append(tensor_hash(record))
        if cfg.save_measurements:
            save_measurement(context.run_dir / "measurements", image_id, record, signature,
                             {"dataset": context.dataset.name, "image_hash": image_hashes[k]})
    singles = [task.operator([a], shape).to(device) for a in artifacts]
    return Measurement(artifacts, operator, y, singles, hashes)


def solve(context: RunContext, image_ids: list[str], measured: Measurement, first: bool) -> list[Solved]:
    """One solve of the whole batch (one sample per image), or, with ``n_samples > 1``, one solve
    per image of its samples against its own operator. Cost is per image (per sample when n > 1)."""
    n = context.n_samples
    if n == 1:
        generators = [make_generator(context.seed, "solver", i) for i in image_ids]
        result, cost, counts = timed_solve(context, measured.operator, measured.y, generators, first)
        return [Solved(result.x0[k : k + 1].detach(), cost.seconds / len(image_ids), cost.peak_mem_mb,
                       cost.peak_mem_kind, counts, {name: float(v[k]) for name, v in result.diagnostics.items()})
                for k in range(len(image_ids))]
    out = []
    for k, image_id in enumerate(image_ids):
        y_k = measured.y[k : k + 1].expand(n, *measured.y.shape[1:])
        stream = SampleStream(make_generator(context.seed, "solver", image_id), n)  # the samples share one stream
        result, cost, counts = timed_solve(context, measured.singles[k], y_k, stream, first and k == 0)
        out.append(Solved(result.x0.detach(), cost.seconds / n, cost.peak_mem_mb, cost.peak_mem_kind, counts,
                          {name: float(v.float().mean()) for name, v in result.diagnostics.items()}))
    return out


def timed_solve(context: RunContext, operator: Operator, y: Tensor, generators, log_steps: bool):
    """One call of the solver, timed and metered; its step callback fans out to the step logger
    (per-step scalars of the first batch) and the memory profile (a row per step)."""
    prior, profile = context.prior, context.profile
    steps = StepLogger(context.logger, log_steps, bool(context.cfg.progress))
    prior.counter.reset()
    if profile is not None:
        profile.start_batch()

    def on_step(step: int, info: dict[str, Any]) -> None:
        steps(step, info)
        if profile is not None:
            profile(step, info)

    with CostMeter(context.device) as cost:
        result = context.solver.solve(prior, operator, y, sigma_y=context.task.sigma_y, generators=generators,
                                      callback=on_step)
    steps.close()
    if profile is not None:
        profile.end_batch()
    return result, cost.result, prior.counter.columns()


def score(context: RunContext, image_id: str, x: Tensor, measured: Measurement, k: int, solved: Solved,
          batch: int) -> dict[str, Any]:
    """The row of image ``k`` of the batch: fidelity, consistency with ``y``, the metric suite's
    metrics, sample diversity (n > 1), distances to the exact posterior (analytic priors), cost.
    Its estimate (the sample mean) is saved under ``outputs/``."""
    cfg, task, suite = context.cfg, context.task, context.suite
    samples, n = solved.samples, context.n_samples
    if samples.shape[1:] != x.shape[1:]:
        raise RuntimeError(f"solver returned shape {tuple(samples.shape[1:])} for images of shape "
                           f"{tuple(x.shape[1:])}")
    finite = bool(torch.isfinite(samples).all())
    row: dict[str, Any] = {**context.run_ids(context.prior.name), "image_id": image_id,
                           "status": "ok" if finite else "diverged"}
    if finite:
        estimate = samples.mean(0, keepdim=True)  # the sample mean (the sample itself when n = 1)
        y, operator = measured.y[k : k + 1], measured.singles[k]
        with torch.no_grad():
            residual = y - operator(estimate)
            support = operator.y_support(residual)
            if support is not None:
                residual = residual * support
            row["data_consistency"] = float(data_consistency(residual.reshape(1, -1).pow(2).sum(-1), task.sigma_y,
                                                             operator.num_measurements(y))[0])
            row.update({name: float(v[0]) for name, v in fidelity(estimate, x).items()})
            row.update(suite.image_metrics(image_id, estimate, x))
            if n > 1:
                per_sample = fidelity(samples, x.expand_as(samples))
                row.update({f"{name}_per_sample": float(v.mean()) for name, v in per_sample.items()})
                row["sample_std"] = float(samples.std(0).mean())
                row.update(suite.diversity(samples))
        if cfg.reference_metrics:
            row.update(posterior_metrics(context.prior, operator, measured.y[k], samples, x[0], sigma_y=task.sigma_y,
                                         seed=context.seed, task_name=task.name, image_id=image_id,
                                         sw_projections=int(cfg.sw_projections)))
        if cfg.save_outputs:
            save_output(context.run_dir / "outputs", image_id, estimate[0], samples if n > 1 else None)
    row.update(solved.diagnostics)
    row.update(n_samples=n, measurement_hash=measured.hashes[k], config_hash=context.store.chash,
               batch_size=batch if n == 1 else n, **context.provenance(), **solved.counts, seconds=solved.seconds,
               peak_mem_mb=solved.peak_mem_mb, peak_mem_kind=solved.peak_mem_kind)
    return row


class StepLogger:
    """Solver callback: per-step scalars of the first batch to the logger, and a step bar for long solves."""

    def __init__(self, logger, first_batch: bool, progress: bool):
        self.logger, self.first_batch, self.progress = logger, first_batch, progress
        self.start = time.perf_counter()
        self.bar = None

    def __call__(self, step: int, info: dict[str, Any]) -> None:
        if self.first_batch:
            scalars = {k: (v.float().mean().item() if isinstance(v, Tensor) else float(v)) for k, v in info.items()
                       if k != "total" and (isinstance(v, (int, float)) or (isinstance(v, Tensor) and v.ndim <= 1))}
            self.logger.log_step(step, scalars)
        if self.progress and self.bar is None and time.perf_counter() - self.start > 5 and "total" in info:
            self.bar = tqdm(total=int(info["total"]), initial=step, desc="  steps", leave=False, dynamic_ncols=True)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- the end of a run: from what is on disk -------------------------------------------------------

def report(context: RunContext) -> RunOutcome:
    """Rank 0, after every image has its row: grid, run-level metrics, summary, W&B. All of it
    from what is on disk, so a resumed run reports what an uninterrupted one would."""
    cfg, store, dataset, run_dir = context.cfg, context.store, context.dataset, context.run_dir
    order = context.order
    frame = store.frame(order)
    current = set(context.ids)
    in_dataset = frame["image_id"].astype(str).isin(current)
    ok_ids = [str(i) for i in frame[(frame["status"] == "ok") & in_dataset]["image_id"]]
    outputs = run_dir / "outputs"
    saved = [i for i in ok_ids if has_output(outputs, i)]
    images = write_grid(context, saved)
    suite = context.metric_suite()

    def clean(image_id: str) -> Tensor:
        return dataset[order[image_id]][1][None]

    if saved:  # the per-image metrics once more on one image: their notes (e.g. LPIPS unavailable) for the summary
        suite.image_metrics(saved[0], load_estimate(outputs, saved[0]), clean(saved[0]))
    run_metrics = suite.finalize([(i, (lambda i=i: load_estimate(outputs, i)), (lambda i=i: clean(i)))
                                  for i in saved])
    outside = sorted(frame.loc[~in_dataset, "image_id"].astype(str))
    if outside:
        run_metrics.setdefault("notes", {})["rows_outside_dataset"] = (
            f"{len(outside)} row(s) of images no longer in the dataset stay in metrics.csv, uncounted: "
            f"{', '.join(outside[:10])}{' ...' if len(outside) > 10 else ''}")
    if context.task.sigma_y <= 0 and ok_ids:
        run_metrics.setdefault("notes", {})["data_consistency"] = (
            "undefined without measurement noise (sigma_y = 0): it is the residual in units of sigma_y")
    if cfg.reference_metrics and "mse_to_post_mean" not in frame.columns:
        run_metrics.setdefault("notes", {})["mse_to_post_mean"] = (
            "the prior has no exact posterior (only the analytic priors, e.g. gmm_photos, do)")
    if suite.want_fid and len(saved) < len(ok_ids):
        run_metrics.setdefault("notes", {})["fid"] = (
            f"FID/KID are computed from the saved estimates (outputs/); {len(ok_ids) - len(saved)} of {len(ok_ids)} "
            f"images have none (save_outputs=false?)")
    model = context.prior.name if context.prior is not None else recorded_model(frame)
    summary = store.write_summary({**context.run_ids(model), "config_hash": store.chash,
                                   "device": str(context.device), **run_metrics,
                                   **({"rows_outside_dataset": outside} if outside else {})}, current)
    for name, reason in run_metrics.get("notes", {}).items():
        print(f"note: {name}: {reason}")
    context.logger.log_rows(frame, images)
    context.logger.log_summary(summary)
    context.logger.finish()
    return RunOutcome(summary, frame[in_dataset])


def recorded_model(frame: pd.DataFrame) -> str | None:
    return None if frame.empty or "model" not in frame else str(frame["model"].iloc[0])


def write_grid(context: RunContext, saved: list[str]) -> dict[str, dict]:
    """grid.png: ground truth | measurement | estimate for the first ``grid_images`` images (each
    column titled); returns those images (H, W, C in [0, 1]) for the logger's table."""
    cfg, run_dir, order = context.cfg, context.run_dir, context.order
    triples, images = [], {}
    for image_id in saved[: int(cfg.grid_images)]:
        x = context.dataset[order[image_id]][1]
        if x.ndim != 3:
            return {}  # vectors: no picture
        measurement = run_dir / "measurements" / f"{image_id}.pt"
        y = torch.load(measurement, map_location="cpu", weights_only=True)["y"][None] if measurement.is_file() else None
        shown_y = measurement_image(y, tuple(x.shape))[0] if y is not None else torch.zeros_like(x)
        triple = (x, shown_y, load_estimate(run_dir / "outputs", image_id)[0])
        triples.append(triple)
        images[image_id] = {name: ((im + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
                            for name, im in zip(("ground_truth", "measurement", "output"), triple)}
    if triples:
        save_grid(run_dir / "grid.png", triples, ("ground truth", "measurement", str(cfg.solver_name)))
        context.logger.log_image("grid", run_dir / "grid.png")
    return images
