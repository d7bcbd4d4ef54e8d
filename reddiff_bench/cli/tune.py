"""``python -m reddiff_bench tune +experiment=NAME [tune.trials=N] [tune.objective=psnr|...]
[tune.workers=N] [hydra/launcher=gpus|slurm]``: tune every (model, task, solver) of the
experiment's sweep on its validation split with the same budget (``study.tuning``).

The command is the project's Hydra app with one job per study and worker (``tune.worker``; the
launcher runs them: one after another, one per GPU, or one per SLURM task); the workers of a
study share its journal. Killing the command and running it again continues every study without
repeating a finished trial. The best settings land in ``conf/tuned/<model>/<task>.yaml``."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from ..errors import ConfigError
from ..run.settings import CONF_DIR, register
from ..study.tuning import worker_job
from .main import on_signals

register()

# the tune command is always a sweep (studies x workers) with its own folders and end-of-sweep report
FIXED = ["hydra.sweep.dir=${tune.dir}/workers", "hydra.sweep.subdir=${hydra.job.num}",
         "hydra.callbacks.sweep_report._target_=reddiff_bench.study.tuning.TuningReport"]


def arguments(argv: list[str]) -> list[str]:
    """The command line for Hydra: ``tune.workers=N`` becomes ``tune.worker=range(N)`` (N jobs per
    study), and the sweep flag and the tuner's folders are added."""
    out, workers = [], None
    for arg in argv:
        if arg.startswith("tune.workers="):
            workers = int(arg.split("=", 1)[1])
            if workers < 1:
                raise ConfigError(f"tune.workers must be at least 1, got {workers}")
            continue
        out.append(arg)
    if workers is not None:
        out.append(f"tune.worker=range({workers})")
    if not any(a in ("-m", "--multirun") for a in out):
        out.insert(0, "--multirun")
    return out + FIXED


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _tune(cfg: DictConfig) -> None:
    on_signals()
    try:
        worker_job(cfg)
    except ConfigError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        sys.argv[1:] = arguments(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _tune()
    return 0
