"""One run: every image of a dataset through one task and one solver (see DESIGN: the flow).

For each image, in the dataset's order: seeded measurement artifacts, then ``y``, then the
solver, then metrics and cost, then one row in ``metrics.csv`` (written atomically after each
batch). At the end: ``summary.json``, an image grid, the W&B summary, and a printed table.

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
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from .diffusion import SampleStream, make_generator
from .errors import ConfigError
from .metrics import data_consistency, psnr, ssim
from .metrics.cost import CostMeter
from .metrics.distribution import sliced_distances
from .metrics.suite import MetricSuite
from .operators import Operator, operator_matrix, support_values
from .results import ResultsStore, config_hash
from .tasks import Task, tensor_hash
from .visualize import save_grid

log = logging.getLogger(__name__)

RESULT_RELEVANT = ("model", "task", "dataset", "solver", "seed")


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
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    torch.manual_seed(0)  # nothing should use the global generator; make any slip reproducible

    dataset = _instantiate(cfg.dataset, "dataset")
    task: Task = _instantiate(cfg.task, "task")
    solver = _instantiate(cfg.solver, "solver")
    prior = _instantiate(cfg.model, "model").to(device).eval()
    logger = _instantiate(cfg.logger, "logger")

    first_id, first_x = dataset[0]
    if tuple(first_x.shape) != tuple(prior.image_shape):
        raise ConfigError(
            f"dataset {dataset.name!r} yields images of shape {tuple(first_x.shape)}, but model {prior.name!r} "
            f"takes {tuple(prior.image_shape)}. Set dataset.size={prior.image_shape[-1]} (or choose a model for "
            f"that image size).")

    check = getattr(solver, "check", None)
    if check is not None:  # refuse an unsupported task before any work
        shape = tuple(first_x.shape)
        probe = task.operator([task.sample_artifacts(shape, make_generator(int(cfg.seed), "artifacts", task.name,
                                                                           first_id))], shape)
        try:
            check(probe)
        except ValueError as err:
            raise ConfigError(f"solver {cfg.solver_name!r} cannot solve task {task.name!r}: {err}") from err

    resolved = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
                for key, value in cfg.items() if key != "hydra"}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    chash = config_hash({k: resolved.get(k) for k in RESULT_RELEVANT})
    solver_name = cfg.solver_name
    ids = dict(run=f"{run_dir.parent.name}/{run_dir.name}", solver=solver_name, task=task.name, dataset=dataset.name,
               model=prior.name, sigma_y=task.sigma_y, seed=int(cfg.seed))
    suite = MetricSuite(**OmegaConf.to_container(cfg.metrics, resolve=True), device=device,
                        cache_dir=cfg.paths.cache_dir, labels=getattr(dataset, "labels", None),
                        dataset_key=json.dumps(resolved.get("dataset"), sort_keys=True, default=str))
    store = ResultsStore(run_dir)
    measurements_dir = run_dir / "measurements"
    measurements_dir.mkdir(exist_ok=True)
    logger.start(run_dir, resolved, name=f"{solver_name}-{task.name}-{dataset.name}")

    grid: list[tuple[Tensor, Tensor, Tensor]] = []
    n = len(dataset)
    batch_size = int(cfg.batch_size)
    from tqdm import tqdm

    bar = tqdm(total=n, desc=f"{solver_name} on {task.name}", unit="img", disable=not cfg.progress, dynamic_ncols=True)
    try:
        for batch_index, start in enumerate(range(0, n, batch_size)):
            rows = _run_batch(cfg, dataset, range(start, min(start + batch_size, n)), task, solver, prior, device,
                              logger, batch_index, ids, chash, measurements_dir, grid, suite)
            store.append(rows)
            bar.update(len(rows))
            key = "psnr" if "psnr" in rows[-1] else "mse"
            done = [r[key] for r in store.rows if r["status"] == "ok" and key in r]
            if done:
                bar.set_postfix({key: f"{sum(done) / len(done):.4g}"})
    finally:
        bar.close()

    if grid:
        save_grid(run_dir / "grid.png", grid)
        logger.log_image("grid", run_dir / "grid.png")
    run_metrics = suite.finalize()
    summary = store.write_summary({**ids, "config_hash": chash, "device": str(device), **run_metrics})
    for name, reason in run_metrics.get("notes", {}).items():
        print(f"note: {name}: {reason}")
    logger.log_rows(store.frame())
    logger.log_summary(summary)
    logger.finish()
    from .report import format_table, summary_table

    print(format_table(summary_table(store.frame(), list(cfg.report.group), bool(cfg.report.ci),
                                     cfg.report.get("columns"))))
    return summary


def _load(dataset, index: int, skip_unreadable: bool) -> tuple[str, Tensor | None, str]:
    try:
        image_id, x = dataset[index]
    except ConfigError as err:
        if not skip_unreadable:
            raise
        log.warning("%s", err)
        return f"index{index}", None, "unreadable"
    if not bool(torch.isfinite(x).all()):
        raise ConfigError(f"image {image_id!r} of dataset {dataset.name!r} contains NaN or infinite values; "
                          f"fix or remove the file.")
    return image_id, x, "ok"


def _saved_measurements(directory: Path, image_ids: list[str]) -> tuple[list[dict[str, Tensor]], Tensor]:
    """Artifacts and y of earlier runs (``<directory>/<image_id>.pt``, as runs save them)."""
    artifacts, ys = [], []
    for image_id in image_ids:
        path = directory / f"{image_id}.pt"
        if not path.is_file():
            raise ConfigError(f"no saved measurement {path} for image {image_id!r} (measurements_from={directory}); "
                              f"point measurements_from at the measurements/ folder of a run on the same data.")
        record = torch.load(path, map_location="cpu", weights_only=True)
        artifacts.append({k[len("artifact_"):]: v for k, v in record.items() if k.startswith("artifact_")})
        ys.append(record["y"])
    return artifacts, torch.stack(ys)


def _solve(solver, prior, operator: Operator, y: Tensor, task: Task, generators, device, callback):
    prior.counter.reset()
    with CostMeter(device) as cost:
        result = solver.solve(prior, operator, y, sigma_y=task.sigma_y, generators=generators, callback=callback)
    callback.close()
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
               measurements_dir: Path, grid, suite: MetricSuite) -> list[dict[str, Any]]:
    skip = bool(getattr(dataset, "skip_unreadable", False))
    loaded = [_load(dataset, i, skip) for i in indices]
    rows = [{**ids, "image_id": image_id, "status": status, "config_hash": chash}
            for image_id, x, status in loaded if x is None]
    loaded = [(image_id, x) for image_id, x, status in loaded if x is not None]
    if not loaded:
        return rows
    image_ids = [image_id for image_id, _ in loaded]
    x = torch.stack([x for _, x in loaded]).to(device)
    shape = tuple(x.shape[1:])
    seed, n_samples = int(cfg.seed), int(cfg.n_samples)
    if cfg.get("measurements_from"):
        artifacts, y = _saved_measurements(Path(cfg.measurements_from), image_ids)
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
            torch.save(record, measurements_dir / f"{image_id}.pt")

    # each image's own operator (batch of one): solves with n_samples > 1, consistency, references
    singles = [task.operator([a], shape).to(device) for a in artifacts]
    # samples[k]: (n_samples, ...) outputs for image k; cost per image (per sample when n > 1)
    if n_samples == 1:
        callback = _StepLogger(logger, batch_index == 0, bool(cfg.progress))
        result, cost, nfe, vjp = _solve(solver, prior, operator, y, task, [_solver_generators(seed, i, 1)[0]
                                        for i in image_ids], device, callback)
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
                                            _solver_generators(seed, image_id, n_samples), device, callback)
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
        row.update(diagnostics[k])
        seconds, peak, kind, nfe, vjp = costs[k]
        row.update(n_samples=n_samples, measurement_hash=hashes[k], config_hash=chash,
                   batch_size=len(image_ids) if n_samples == 1 else n_samples,
                   nfe=nfe, vjp=vjp, seconds=seconds, peak_mem_mb=peak, peak_mem_kind=kind)
        rows.append(row)
        if len(grid) < int(cfg.grid_images) and x.ndim == 4:
            shown = out[0] if finite else torch.zeros_like(x[k])
            grid.append((x[k].cpu(), _measurement_image(operator, y[k : k + 1], shape)[0].cpu(), shown.cpu()))
    return rows


def _measurement_image(operator: Operator, y: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A picture of the measurement for the grid: y itself when image-shaped, else upsampled."""
    if tuple(y.shape[1:]) == tuple(shape):
        return y
    if y.ndim == 4 and y.shape[1] == shape[0]:
        return torch.nn.functional.interpolate(y, size=shape[1:], mode="nearest")
    return torch.zeros(1, *shape, device=y.device)
