"""The project's Hydra config, composed outside ``python -m reddiff_bench`` (for the estimator,
the study layer and tests): the same ``conf/`` folder and root config as the app."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose(overrides: list[str]) -> DictConfig:
    """The root config with ``overrides`` (Hydra's own node included)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
