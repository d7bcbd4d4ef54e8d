"""``python -m reddiff_bench [overrides]``: one run, or a sweep (``-m``, or a preset that is one).

In a sweep a job that is refused (bad input: ``ConfigError``) or that fails (any other error)
writes ``error.txt`` in its directory and the sweep goes on; the sweep's report lists them and
sets the exit status (2 when every job was refused, 1 when a job failed)."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .errors import ConfigError

REFUSED, FAILED = "refused", "failed"


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from .runner import run

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        summary = run(cfg, run_dir)
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
    return summary.get("psnr")  # for Hydra sweepers that optimise


def _record(run_dir: Path, kind: str, text: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").write_text(f"{kind}: {text}")


if __name__ == "__main__":
    main()
