"""The Hydra app: ``python -m reddiff_bench [overrides]`` is one run, or a sweep (``-m``, or a
preset that is one); at its end the run's table is printed.

In a sweep a job that is refused (bad input: ``ConfigError``) or that fails (any other error)
writes ``error.txt`` in its directory and the sweep goes on; the sweep's report
(``study.report.SweepReport``) lists them and sets the exit status (1 when a job failed, 2 when
one was refused, unless ``report.allow_errors``). Ctrl-C, SIGTERM and SIGHUP stop the command with
128 + the signal, the finished rows kept."""

from __future__ import annotations

import signal
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ..errors import ConfigError, Interrupted
from ..run.pipeline import run
from ..run.settings import CONF_DIR, register
from ..study.report import render, summary

register()  # the resolvers of conf/ (${published:...}, ${run_dirname:...}), before Hydra composes

REFUSED, FAILED = "refused", "failed"


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    on_signals()
    try:
        outcome = run(cfg, run_dir)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the whole command stops, the rows stay
        stopped = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT, "SIGINT")
        print(f"\ninterrupted by {stopped.name}: the finished rows of {run_dir} are kept; run the same command "
              f"to resume", file=sys.stderr)
        sys.exit(stopped.exit_status)
    except ConfigError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        if sweep:  # one refused job must not end the sweep
            _record(run_dir, REFUSED, f"{err}\n")
            return None
        sys.exit(2)
    except Exception as err:  # noqa: BLE001 - a crashed job is recorded and the sweep goes on
        if not sweep:
            raise
        print(f"\nerror: job failed: {type(err).__name__}: {err}", file=sys.stderr)
        _record(run_dir, FAILED, traceback.format_exc())
        return None
    (run_dir / "error.txt").unlink(missing_ok=True)  # a resumed job that now succeeds
    if outcome is None:  # a rank other than 0 of a torchrun run
        return None
    report = cfg.report
    print(render(summary(outcome.rows, list(report.group), report.get("columns")), intervals=bool(report.ci)))
    return outcome.summary.get("psnr")  # for Hydra sweepers that optimise


def on_signals() -> None:
    """SIGTERM (a scheduler's stop, SLURM's before a requeue) and SIGHUP (the terminal closed) stop
    a run as Ctrl-C does. SIGUSR2 stays submitit's (its checkpoint-and-requeue before a time limit)."""

    def stop(number: int, frame) -> None:
        raise Interrupted(number, signal.Signals(number).name)

    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, stop)


def _record(run_dir: Path, kind: str, text: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").write_text(f"{kind}: {text}")


if __name__ == "__main__":
    main()
