"""``python -m reddiff_bench [overrides]``: one run (``-m`` for a Hydra sweep)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .errors import ConfigError


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from .runner import run

    try:
        summary = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        sys.exit(2)
    return summary.get("psnr")  # for Hydra sweepers that optimise


if __name__ == "__main__":
    main()
