"""``python -m reddiff_bench [overrides]``: one run (``-m`` for a Hydra sweep)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .errors import ConfigError


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from .runner import run

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        summary = run(cfg, run_dir)
    except ConfigError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.MULTIRUN:  # one refused job must not end the sweep
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").write_text(f"{err}\n")
            return None
        sys.exit(2)
    return summary.get("psnr")  # for Hydra sweepers that optimise


if __name__ == "__main__":
    main()
