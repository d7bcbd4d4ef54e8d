"""``python -m reddiff_bench train [OVERRIDES]``: train the small offline prior (``conf/train.yaml``;
see ``run.train``), or with ``evaluate_only=true`` evaluate a trained one, and print its model card."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ..run import train as training
from ..run.settings import CONF_DIR, register

register()


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out = training.evaluate(cfg) if cfg.evaluate_only else training.train(cfg)
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
