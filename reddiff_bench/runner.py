"""One run: every image of a dataset through one task and one solver (see DESIGN: the flow).

For each image, in the dataset's order: seeded measurement artifacts, then ``y``, then the
solver, then metrics and cost, then one row in ``metrics.csv`` (written atomically after each
batch) and the estimate under ``outputs/``. At the end: ``summary.json`` (FID/KID from the saved
estimates), an image grid, the W&B summary, and a printed table.

The runner composes; each concern lives in its own module: the run directory's ownership, config
check, state and rows (``store``, which makes re-running a command resume it), the per-image
files (``outputs``), the processes of one run (``distributed``: torchrun shards the images), the
GPU slot of a sweep job (``launch``), the checks of settings (``validate``).

Randomness: three generators per image, seeded from (run seed, stream, task, image id):
``artifacts`` (mask, kernel), ``noise`` (measurement noise), ``solver``. The first two do not
depend on the solver, so every solver of a sweep sees the same ``y``.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from . import distributed
from .diffusion import SampleStream, make_generator
from .errors import ConfigError
from .loggers import NullLogger
from .metrics import data_consistency, psnr, ssim
from .metrics.cost import CostMeter
from .metrics.distribution import sliced_distances
from .metrics.suite import MetricSuite
from .operators import Operator, operator_matrix, support_values
from .outputs import has_output, load_estimate, load_measurements, save_measurement, save_output, task_signature
from .profile import MemoryProfile
from .store import RunOwnership, RunStore, result_relevant
from .tasks import Task, tensor_hash
from .validate import check_run_settings
from .visualize import save_grid

log = logging.getLogger(__name__)

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} asked for, but CUDA is not available here. Use device=cpu or device=auto.")
    return device


def _instantiate(node: DictConfig, group: str) -> Any:
    """Instantiate a config group, turning errors raised by our own checks into clean messages."""
    try:
        return instantiate(node, _convert_="all")
    except Exception as err:  # Hydra wraps errors in InstantiationException; find ours
        cause: BaseException | None = err
        while cause is not None:
            if isinstance(cause, ConfigError):
                raise cause
            cause = cause.__cause__
        raise ConfigError(f"could not build the {group!r} config ({node.get('_target_', '?')}): {err}") from err


class _StepLogger:
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
            from tqdm import tqdm

            self.bar = tqdm(total=int(info["total"]), initial=step, desc="  steps", leave=False, dynamic_ncols=True)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def reference_metrics(prior, task: Task, operator: Operator, y: Tensor, samples: Tensor, x: Tensor,
                      cfg: DictConfig, image_id: str) -> dict[str, float]:
    """Distances to the exact posterior, for priors that have one (linear tasks, Gaussian noise).

    ``operator`` is the image's own (batch of one); ``samples`` (n, ...) are the solver's outputs
    for its measurement ``y``."""
    if not hasattr(prior, "exact_posterior_mean") or not operator.linear:
        return {}
    shape = tuple(x.shape)
    A = operator_matrix(operator, shape)  # works on a float64 CPU copy
    y_obs = support_values(copy.deepcopy(operator).cpu().double(), y[None].double().cpu())
    flat = samples.detach().reshape(samples.shape[0], -1).double().cpu()
    d = flat.shape[1]
    if flat.shape[0] == 1:
        post_mean = prior.exact_posterior_mean(A, y_obs, task.sigma_y)
        out = {"mse_to_post_mean": float(((flat[0] - post_mean) ** 2).mean())}
    else:
        generator = make_generator(int(cfg.seed), "posterior", task.name, image_id)
        exact, weights, means = prior.exact_posterior_samples(A, y_obs, task.sigma_y, flat.shape[0], generator)
        post_mean = weights @ means
        modes = means[weights >= 1e-3 * weights.max()]
        sliced = sliced_distances(flat, exact, int(cfg.sw_projections), generator)
        out = {
            "mse_to_post_mean": float(((flat.mean(0) - post_mean) ** 2).mean()),
            "sw_to_posterior": sliced["sw2"],
            "sw1_to_posterior": sliced["sw1"],
            "dist_to_post_mean": float(((flat - post_mean) ** 2).sum(-1).sqrt().mean() / d**0.5),
            "dist_to_nearest_mode": float(torch.cdist(flat, modes).min(-1).values.mean() / d**0.5),
        }
    if len(shape) == 3:
        out["psnr_post_mean"] = float(psnr(post_mean.reshape(shape).float()[None], x[None].cpu())[0])
    else:
        out["mse_post_mean"] = float(((post_mean.float() - x.cpu().reshape(-1)) ** 2).mean())
    return out


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run (or resume) the configuration ``cfg`` into ``run_dir``; returns the summary (rank 0; the
    other ranks of a distributed run return an empty dict)."""
    run_dir = Path(run_dir)
    torch.manual_seed(0)  # nothing should use the global generator; make any slip reproducible
    check_run_settings(cfg)
    device = resolve_device(cfg.device)
    slot = None
    choices = _hydra_choices()
    if choices.get("hydra/launcher") == "gpus":
        from .launch import job_device

        device, slot = job_device(Path(HydraConfig.get().sweep.dir) / ".gpu_slots", cfg.launch.get("devices"), device)
    context = distributed.from_environment(device)
    device = context.device(device)
    try:
        return _run(cfg, run_dir, device, context, slot)
    finally:
        context.close()


def _hydra_choices() -> dict[str, str]:
    if not HydraConfig.initialized():
        return {}
    return dict(HydraConfig.get().runtime.choices)


def _run(cfg: DictConfig, run_dir: Path, device: torch.device, context: distributed.Context,
         slot: int | None) -> dict[str, Any]:
    dataset = _instantiate(cfg.dataset, "dataset")
    task: Task = _instantiate(cfg.task, "task")
    solver = _instantiate(cfg.solver, "solver")
    resolved = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
                for key, value in cfg.items() if key != "hydra"}
    ids = _dataset_ids(dataset)
    store = RunStore(run_dir, result_relevant(resolved), context.rank, context.world_size)
    ownership = RunOwnership(run_dir)
    refusal = None
    if context.is_main:  # rank 0 owns the directory; the other ranks learn its verdict
        try:
            ownership.acquire()
            store.check_config()
        except ConfigError as err:
            refusal = str(err)
    refusal = context.broadcast(refusal)
    if refusal is not None:
        raise ConfigError(refusal)
    try:
        if context.is_main:
            from .cache import atomic_write_text

            atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
            store.set_state("running", images_total=len(ids))
        summary = _solve_and_report(cfg, resolved, run_dir, dataset, ids, task, solver, store, device, context, slot)
        if context.is_main:
            store.set_state("complete", images_done=summary.get("num_images"))
        return summary
    except BaseException as err:
        if context.is_main:
            store.set_state("failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        ownership.release()


def _dataset_ids(dataset) -> list[str]:
    ids = [dataset.image_id(i) for i in range(len(dataset))]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ConfigError(f"dataset {dataset.name!r} yields repeated image ids ({', '.join(repeated)}): ids key the "
                          f"rows and the seeds, so each image must appear once. Remove the duplicates.")
    return ids


def _solve_and_report(cfg, resolved, run_dir: Path, dataset, ids: list[str], task: Task, solver, store: RunStore,
                      device: torch.device, context: distributed.Context, slot: int | None) -> dict[str, Any]:
    order = {image_id: index for index, image_id in enumerate(ids)}
    store.load()
    todo = [i for i in context.shard(range(len(ids))) if ids[i] not in store.done]
    if store.done and context.is_main:
        log.info("resuming %s: %d of %d images already have rows", run_dir, len(store.done & set(ids)), len(ids))
    solver_name = cfg.solver_name
    run_ids = dict(run=f"{run_dir.parent.name}/{run_dir.name}", solver=solver_name, task=task.name,
                   dataset=dataset.name, sigma_y=task.sigma_y, seed=int(cfg.seed))
    logger = _instantiate(cfg.logger, "logger") if context.is_main else NullLogger()
    logger.start(run_dir, resolved, name=f"{solver_name}-{task.name}-{dataset.name}", run_id=store.chash)
    model_name = None
    if todo:
        prior = _instantiate(cfg.model, "model").to(device).eval()
        model_name = prior.name
        _preflight(cfg, dataset, todo, task, solver, prior)
        suite = _metric_suite(cfg, resolved, dataset, device)
        for folder in ("measurements", "outputs"):
            (run_dir / folder).mkdir(exist_ok=True)
        provenance = dict(rank=context.rank, world_size=context.world_size,
                          **({"gpu_slot": slot} if slot is not None else {}))
        profile = None
        if cfg.profile.memory:
            name = "memory.csv" if context.world_size == 1 else f"memory.rank{context.rank}.csv"
            profile = MemoryProfile(run_dir, device, logger, bool(cfg.profile.memory_snapshot), name)
        batch_size = int(cfg.batch_size)
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"{solver_name} on {task.name}", unit="img",
                   disable=not cfg.progress or not context.is_main, dynamic_ncols=True)
        try:
            for batch_index, start in enumerate(range(0, len(todo), batch_size)):
                rows = _run_batch(cfg, dataset, todo[start : start + batch_size], task, solver, prior, device, logger,
                                  batch_index, {**run_ids, "model": prior.name}, store.chash, run_dir, suite,
                                  task_signature(resolved["task"]), provenance, profile)
                store.append(rows, order)
                bar.update(len(rows))
                key = "psnr" if "psnr" in rows[-1] else "mse"
                done = [r[key] for r in store.new_rows if r["status"] == "ok" and key in r]
                if done:
                    bar.set_postfix({key: f"{sum(done) / len(done):.4g}"})
        finally:
            bar.close()
    context.barrier()
    if not context.is_main:
        return {}
    if context.distributed:
        store.merge(order)
    else:
        store.write(order)
    return _report(cfg, resolved, run_dir, dataset, ids, order, store, logger, device,
                   {**run_ids, "model": model_name or _recorded_model(store)})


def _recorded_model(store: RunStore) -> str | None:
    frame = store.frame()
    return None if frame.empty or "model" not in frame else str(frame["model"].iloc[0])


def _preflight(cfg, dataset, todo: list[int], task: Task, solver, prior) -> None:
    """Before any image is solved: the images fit the model, the solver can do the task, its step
    count fits the model's schedule."""
    steps, T = getattr(solver, "steps", None), prior.schedule.num_steps
    if steps is not None and steps > T:
        raise ConfigError(f"solver.steps must be an integer in 1..{T} for model {prior.name!r} (its schedule has "
                          f"{T} steps), got {steps}")
    start_t = getattr(solver, "start_t", None)
    if start_t is not None and start_t >= T:
        raise ConfigError(f"solver.start_t must be in 0..{T - 1} for model {prior.name!r}, got {start_t}")
    skip = bool(getattr(dataset, "skip_unreadable", False))
    for index in todo:  # the first readable image of this run's share
        image_id, x, status = _load(dataset, index, skip)
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
        probe = task.operator([task.sample_artifacts(shape, make_generator(int(cfg.seed), "artifacts", task.name,
                                                                           image_id))], shape)
        try:
            check(probe)
        except ValueError as err:
            raise ConfigError(f"solver {cfg.solver_name!r} cannot solve task {task.name!r}: {err}") from err


def _metric_suite(cfg, resolved, dataset, device) -> MetricSuite:
    return MetricSuite(**OmegaConf.to_container(cfg.metrics, resolve=True), device=device,
                       cache_dir=cfg.paths.cache_dir, labels=getattr(dataset, "labels", None),
                       dataset_key=json.dumps(resolved.get("dataset"), sort_keys=True, default=str))


def _report(cfg, resolved, run_dir: Path, dataset, ids: list[str], order: dict[str, int], store: RunStore, logger,
            device, run_ids: dict[str, Any]) -> dict[str, Any]:
    """Rank 0, after every image has its row: grid, run-level metrics, summary, W&B, table. All of
    it from what is on disk, so a resumed run reports what an uninterrupted one would."""
    frame = store.frame(order)
    current = set(ids)
    ok_ids = [str(i) for i in frame[(frame["status"] == "ok") & frame["image_id"].astype(str).isin(current)]["image_id"]]
    outputs = run_dir / "outputs"
    saved = [i for i in ok_ids if has_output(outputs, i)]
    images = _write_grid(cfg, run_dir, dataset, order, saved, logger)
    suite = _metric_suite(cfg, resolved, dataset, device)

    def clean(image_id: str):
        return lambda: dataset[order[image_id]][1][None]

    if saved:  # the per-image metrics once more on one image: their notes (e.g. LPIPS unavailable) for the summary
        suite.image_metrics(saved[0], load_estimate(outputs, saved[0]), clean(saved[0])())
    run_metrics = suite.finalize([(i, (lambda i=i: load_estimate(outputs, i)), clean(i)) for i in saved])
    if cfg.reference_metrics and "mse_to_post_mean" not in frame.columns:
        run_metrics.setdefault("notes", {})["mse_to_post_mean"] = (
            "the prior has no exact posterior (only the analytic priors, e.g. gmm_photos, do)")
    if suite.want_fid and len(saved) < len(ok_ids):
        run_metrics.setdefault("notes", {})["fid"] = (
            f"FID/KID are computed from the saved estimates (outputs/); {len(ok_ids) - len(saved)} of {len(ok_ids)} "
            f"images have none (save_outputs=false?)")
    summary = store.write_summary({**run_ids, "config_hash": store.chash, "device": str(device), **run_metrics},
                                  current)
    for name, reason in run_metrics.get("notes", {}).items():
        print(f"note: {name}: {reason}")
    logger.log_rows(frame, images)
    logger.log_summary(summary)
    logger.finish()
    from .report import format_table, summary_table

    print(format_table(summary_table(frame[frame["image_id"].astype(str).isin(current)], list(cfg.report.group),
                                     bool(cfg.report.ci), cfg.report.get("columns"))))
    return summary


def _write_grid(cfg, run_dir: Path, dataset, order: dict[str, int], saved: list[str], logger) -> dict[str, dict]:
    """grid.png: ground truth | measurement | estimate for the first ``grid_images`` images (each
    column titled); returns those images (H, W, C in [0, 1]) for the logger's table."""
    shown = saved[: int(cfg.grid_images)]
    triples, images = [], {}
    for image_id in shown:
        x = dataset[order[image_id]][1]
        if x.ndim != 3:
            return {}  # vectors: no picture
        measurement = run_dir / "measurements" / f"{image_id}.pt"
        y = torch.load(measurement, map_location="cpu", weights_only=True)["y"][None] if measurement.is_file() else None
        shown_y = _measurement_image(y, tuple(x.shape))[0] if y is not None else torch.zeros_like(x)
        triple = (x, shown_y, load_estimate(run_dir / "outputs", image_id)[0])
        triples.append(triple)
        images[image_id] = {name: ((im + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
                            for name, im in zip(("ground_truth", "measurement", "output"), triple)}
    if triples:
        save_grid(run_dir / "grid.png", triples, ("ground truth", "measurement", str(cfg.solver_name)))
        logger.log_image("grid", run_dir / "grid.png")
    return images


def _load(dataset, index: int, skip_unreadable: bool) -> tuple[str, Tensor | None, str]:
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


def _solve(solver, prior, operator: Operator, y: Tensor, task: Task, generators, device, callback: _StepLogger,
           profile: MemoryProfile | None):
    """One solve, timed and metered; the step callback fans out to the step logger and the memory
    profile (one row per step)."""
    prior.counter.reset()
    if profile is not None:
        profile.start_batch()

    def on_step(step: int, info: dict[str, Any]) -> None:
        callback(step, info)
        if profile is not None:
            profile(step, info)

    with CostMeter(device) as cost:
        result = solver.solve(prior, operator, y, sigma_y=task.sigma_y, generators=generators, callback=on_step)
    callback.close()
    if profile is not None:
        profile.end_batch()
    return result, cost.result, prior.counter.nfe, prior.counter.vjp


def _solver_generators(seed: int, image_id: str, n_samples: int):
    """One solver stream per image; its ``n_samples`` samples share it (drawn as one tensor)."""
    generator = make_generator(seed, "solver", image_id)
    return [generator] if n_samples == 1 else SampleStream(generator, n_samples)


def _image_metrics(estimate: Tensor, x: Tensor) -> dict[str, Tensor]:
    """Per-image fidelity metrics (B,): PSNR/SSIM for images (SSIM when at least 11 pixels wide),
    mean squared error for vectors."""
    if estimate.ndim != 4:
        return {"mse": ((estimate - x) ** 2).reshape(x.shape[0], -1).mean(-1)}
    out = {"psnr": psnr(estimate, x)}
    if min(x.shape[-2:]) >= 11:
        out["ssim"] = ssim(estimate, x)
    return out


def _run_batch(cfg, dataset, indices, task: Task, solver, prior, device, logger, batch_index, ids, chash,
               run_dir: Path, suite: MetricSuite, signature: dict[str, Any], provenance: dict[str, Any],
               profile: MemoryProfile | None) -> list[dict[str, Any]]:
    skip = bool(getattr(dataset, "skip_unreadable", False))
    loaded = [_load(dataset, i, skip) for i in indices]
    rows = [{**ids, "image_id": image_id, "status": status, "config_hash": chash, **provenance}
            for image_id, x, status in loaded if x is None]
    loaded = [(image_id, x) for image_id, x, status in loaded if x is not None]
    if not loaded:
        return rows
    image_ids = [image_id for image_id, _ in loaded]
    x = torch.stack([x for _, x in loaded]).to(device)
    shape = tuple(x.shape[1:])
    seed, n_samples = int(cfg.seed), int(cfg.n_samples)
    if cfg.get("measurements_from"):
        artifacts, y = load_measurements(Path(cfg.measurements_from), image_ids, signature)
        operator: Operator = task.operator(artifacts, shape).to(device)
        y = y.to(device)
    else:
        artifacts = [task.sample_artifacts(shape, make_generator(seed, "artifacts", task.name, i)) for i in image_ids]
        operator = task.operator(artifacts, shape).to(device)
        y = task.measure(operator, x, [make_generator(seed, "noise", task.name, i) for i in image_ids])
    hashes = []
    for k, image_id in enumerate(image_ids):
        record = {**{f"artifact_{name}": t for name, t in artifacts[k].items()}, "y": y[k].cpu()}
        hashes.append(tensor_hash(record))
        if cfg.save_measurements:
            save_measurement(run_dir / "measurements", image_id, record, signature)

    # each image's own operator (batch of one): solves with n_samples > 1, consistency, references
    singles = [task.operator([a], shape).to(device) for a in artifacts]
    # samples[k]: (n_samples, ...) outputs for image k; cost per image (per sample when n > 1)
    if n_samples == 1:
        callback = _StepLogger(logger, batch_index == 0, bool(cfg.progress))
        result, cost, nfe, vjp = _solve(solver, prior, operator, y, task, [_solver_generators(seed, i, 1)[0]
                                        for i in image_ids], device, callback, profile)
        samples = [result.x0[k : k + 1].detach() for k in range(len(image_ids))]
        costs = [(cost.seconds / len(image_ids), cost.peak_mem_mb, cost.peak_mem_kind, nfe, vjp)] * len(image_ids)
        diagnostics = [{name: float(v[k]) for name, v in result.diagnostics.items()} for k in range(len(image_ids))]
    else:
        samples, costs, diagnostics = [], [], []
        for k, image_id in enumerate(image_ids):
            single = singles[k]
            callback = _StepLogger(logger, batch_index == 0 and k == 0, bool(cfg.progress))
            y_k = y[k : k + 1].expand(n_samples, *y.shape[1:])
            result, cost, nfe, vjp = _solve(solver, prior, single, y_k, task,
                                            _solver_generators(seed, image_id, n_samples), device, callback,
                                            profile)
            samples.append(result.x0.detach())
            costs.append((cost.seconds / n_samples, cost.peak_mem_mb, cost.peak_mem_kind, nfe, vjp))
            diagnostics.append({name: float(v.float().mean()) for name, v in result.diagnostics.items()})

    for k, image_id in enumerate(image_ids):
        out = samples[k]
        if out.shape[1:] != x.shape[1:]:
            raise RuntimeError(f"solver returned shape {tuple(out.shape[1:])} for images of shape {shape}")
        finite = bool(torch.isfinite(out).all())
        row: dict[str, Any] = {**ids, "image_id": image_id, "status": "ok" if finite else "diverged"}
        if finite:
            estimate = out.mean(0, keepdim=True)  # the sample mean (the sample itself when n = 1)
            with torch.no_grad():
                op_k = singles[k]
                residual = y[k : k + 1] - op_k(estimate)
                support = op_k.y_support(residual)
                if support is not None:
                    residual = residual * support
                row["data_consistency"] = float(data_consistency(residual.reshape(1, -1).pow(2).sum(-1), task.sigma_y,
                                                                 op_k.num_measurements(y[k : k + 1]))[0])
                row.update({name: float(v[0]) for name, v in _image_metrics(estimate, x[k : k + 1]).items()})
                row.update(suite.image_metrics(image_id, estimate, x[k : k + 1]))
                if n_samples > 1:
                    per_sample = _image_metrics(out, x[k : k + 1].expand_as(out))
                    row.update({f"{name}_per_sample": float(v.mean()) for name, v in per_sample.items()})
                    row["sample_std"] = float(out.std(0).mean())
                    row.update(suite.diversity(out))
            if cfg.reference_metrics:
                row.update(reference_metrics(prior, task, singles[k], y[k], out, x[k], cfg, image_id))
            if cfg.save_outputs:
                save_output(run_dir / "outputs", image_id, estimate[0], out if n_samples > 1 else None)
        row.update(diagnostics[k])
        seconds, peak, kind, nfe, vjp = costs[k]
        row.update(n_samples=n_samples, measurement_hash=hashes[k], config_hash=chash,
                   batch_size=len(image_ids) if n_samples == 1 else n_samples, **provenance,
                   nfe=nfe, vjp=vjp, seconds=seconds, peak_mem_mb=peak, peak_mem_kind=kind)
        rows.append(row)
    return rows


def _measurement_image(y: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A picture of the measurement for the grid: y itself when image-shaped, else upsampled."""
    if tuple(y.shape[1:]) == tuple(shape):
        return y
    if y.ndim == 4 and y.shape[1] == shape[0]:
        return torch.nn.functional.interpolate(y, size=shape[1:], mode="nearest")
    return torch.zeros(1, *shape, device=y.device)
