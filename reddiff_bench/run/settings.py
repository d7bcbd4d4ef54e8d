"""The run's settings: the project's Hydra config (composed here or by ``python -m reddiff_bench``),
its OmegaConf resolvers, the checks of the run's own numbers, and the device.

Resolvers (registered by :func:`register`, which the entry points call before Hydra composes):

* ``${published:SOLVER.KEY,DEFAULT}``: a solver's published setting. A solver YAML writes
  ``zeta: ${published:dps.zeta,1.0}``; the value is looked up in the experiment's top-level
  ``published`` block (a preset that reproduces a paper), then in the task's ``task.published``
  (settings the official code ties to a kind of task), then the default. A command-line override
  (``solver.zeta=0.7``) replaces the interpolation and wins over all three. Each value's YAML
  comment cites the file or paper it comes from.
* ``${launch_slots:${launch.devices}}``: the number of workers of the gpus launcher (``launch``).
* ``${run_dirname:${hydra.overrides.task}}``: a run or sweep-job directory name from the overrides
  that can change its result (``identity``; deterministic, so that re-running a command finds its
  own results).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict

from ..checks import check_number
from ..errors import ConfigError
from .identity import directory_name, solver_text
from .launch import slot_count

# conf/ at the top of the repository; reddiff_bench/conf links to it in a checkout and is a copy in
# an installed wheel, so one path serves both.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

TUNED_GROUP = "tuned"  # conf/tuned/<model>/<task>.yaml: settings written by the tuner (+tuned=<model>/<task>)

_ABSENT = object()
PUBLISHED_SOURCES = ("published", "task.published")  # experiment first, then task


def published(path: str, default: Any = None, *, _root_: Any) -> Any:
    """The value at ``published.<path>``, else ``task.published.<path>``, else ``default``."""
    for prefix in PUBLISHED_SOURCES:
        value = OmegaConf.select(_root_, f"{prefix}.{path}", default=_ABSENT)
        if value is not _ABSENT:
            return value
    return default


def run_dirname(overrides: Any, *, _root_: Any) -> str:
    """A run's or sweep job's directory name from its command-line overrides (``identity``)."""
    solver = OmegaConf.to_container(_root_.solver, resolve=False) if "solver" in _root_ else {}
    return directory_name([str(o) for o in overrides], solver_text(solver))


def register() -> None:
    """Register the project's resolvers (once per process)."""
    for name, function in (("published", published), ("launch_slots", slot_count), ("run_dirname", run_dirname)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


def compose(overrides: list[str]) -> DictConfig:
    """The root config with ``overrides`` (Hydra's own node included), as ``python -m
    reddiff_bench`` would compose it: for the estimator, the study layer and tests."""
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    return apply_tuned(cfg)


def choices(cfg: DictConfig) -> dict[str, str]:
    """The config groups' chosen options (``model``, ``solver``, ...): from the config's own
    Hydra node when composed with it, else from the running Hydra app; empty without either."""
    node = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if node is None and HydraConfig.initialized():
        node = HydraConfig.get().runtime.choices
    return {str(k): str(v) for k, v in (node or {}).items()}


def apply_tuned(cfg: DictConfig) -> DictConfig:
    """With ``+tuned=<model>/<task>``: the tuned settings of the run's solver set into ``cfg``
    (idempotent). Refused when the file was tuned for another model or task, or holds no
    settings for this solver (naming those it holds)."""
    block = cfg.get(TUNED_GROUP)
    if not block:
        return cfg
    picked = choices(cfg)
    solver, model = picked.get("solver"), picked.get("model")
    if block.get("model") != model or block.get("task") not in (picked.get("task"), cfg.task.get("name")):
        raise ConfigError(f"+tuned: these settings were tuned for model {block.get('model')!r} on task "
                          f"{block.get('task')!r}, not model {model!r} on task {cfg.task.get('name')!r}; use "
                          f"+tuned={model}/{cfg.task.get('name')} (after python -m reddiff_bench tune) or drop +tuned.")
    solvers = block.get("solvers") or {}
    if solver not in solvers:
        raise ConfigError(f"+tuned={model}/{block.get('task')} holds no tuned settings for solver {solver!r} (it has "
                          f"{', '.join(solvers) or 'none'}); tune it first: python -m reddiff_bench tune ... "
                          f"solver={solver}")
    with open_dict(cfg):
        for path, value in (solvers[solver].get("settings") or {}).items():
            OmegaConf.update(cfg, str(path), value, merge=False)
    return cfg


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The run's config with every interpolation resolved, Hydra's own node left out (config.yaml)."""
    return {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            for key, value in cfg.items() if key != "hydra"}


# top-level keys of conf/config.yaml: (key, kwargs of check_number)
RUN_SETTINGS = [
    ("batch_size", dict(minimum=1, integer=True)),
    ("n_samples", dict(minimum=1, integer=True)),
    ("grid_images", dict(minimum=0, integer=True)),
    ("sw_projections", dict(minimum=1, integer=True)),
    ("seed", dict(minimum=0, integer=True)),
    ("metrics.kid_subsets", dict(minimum=1, integer=True)),
    ("metrics.kid_subset_size", dict(minimum=2, integer=True)),
]


def check_run_settings(cfg: DictConfig) -> None:
    """The run's own numeric settings (the groups' constructors check theirs), before any work."""
    for key, limits in RUN_SETTINGS:
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        try:
            check_number(key, value, **limits)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def space_of(target: str) -> str:
    """``pixel`` or ``latent``: the ``space`` of a solver class or model factory (pixel when unset)."""
    try:
        return str(getattr(get_object(target), "space", "pixel"))
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"cannot import {target!r}: {err}") from err


def group_spaces(group: str) -> dict[str, list[str]]:
    """The options of a config group (``solver``, ``model``) by space, from their ``_target_``."""
    out: dict[str, list[str]] = {}
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        target = OmegaConf.load(path).get("_target_")
        if target:
            out.setdefault(space_of(str(target)), []).append(path.stem)
    return out


def check_spaces(cfg: DictConfig, solver_name: str | None = None, model_name: str | None = None) -> None:
    """A pixel solver on a latent prior, or a latent solver on a pixel prior, is refused before any
    work, with the solvers that fit the model and the models that fit the solver."""
    model_target, solver_target = OmegaConf.select(cfg, "model._target_"), OmegaConf.select(cfg, "solver._target_")
    if not model_target or not solver_target:
        return
    model_space, solver_space = space_of(str(model_target)), space_of(str(solver_target))
    if model_space != solver_space:
        solver_name = solver_name or str(solver_target).rsplit(".", 1)[-1]
        model_name = model_name or str(model_target).rsplit(".", 1)[-1]
        raise ConfigError(
            f"solver {solver_name!r} is a {solver_space} solver and model {model_name!r} a {model_space} prior: "
            f"they do not fit. Solvers for model {model_name!r}: "
            f"{', '.join(group_spaces('solver').get(model_space, []))}; "
            f"or a {solver_space} model for solver {solver_name!r}: "
            f"{', '.join(group_spaces('model').get(solver_space, []))}.")


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; CUDA asked for and absent is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} asked for, but CUDA is not available here. Use device=cpu or device=auto.")
    return device
