"""The project's OmegaConf resolvers, registered when the package is imported (before Hydra
composes a config):

* ``${published:SOLVER.KEY,DEFAULT}``: a solver's published setting (``reddiff_bench.published``);
* ``${launch_slots:${launch.devices}}``: the number of workers of the gpus launcher
  (``reddiff_bench.launch``);
* ``${dirname:${hydra.job.override_dirname}}``: a run or sweep-job directory name from its
  overrides (deterministic, so that re-running a command finds its own results).
"""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf


def dirname(overrides: str, default: str = "default") -> str:
    """``overrides`` (Hydra's ``override_dirname``, e.g. ``solver=dps,task=sr4``) as one folder name:
    ``default`` when empty, ``/`` replaced, and long names shortened with a hash of the whole."""
    name = str(overrides or "").replace("/", "_").replace("\\", "_") or default
    if len(name) > 120:
        name = f"{name[:100]}...{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return name


def launch_slots(devices=None) -> int:
    from .launch import slot_count  # torch, imported only when a gpus sweep composes

    return slot_count(devices)


def register() -> None:
    from .published import published

    for name, function in (("published", published), ("launch_slots", launch_slots), ("dirname", dirname)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
