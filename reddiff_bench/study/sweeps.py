"""The jobs of a sweep, as Hydra's basic sweeper would launch them: the cartesian product of a
preset's ``hydra.sweeper.params`` and the command line's ``key=a,b`` values."""

from __future__ import annotations

import itertools

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from ..run.settings import CONF_DIR, compose


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The override list of each job of the sweep ``overrides`` (Hydra's own override parser; the
    sweep keys in the order given, the preset's params first; ``glob(...)`` over a group's options)."""
    fixed = [text for text, override in zip(overrides, OverridesParser.create().parse_overrides(overrides))
             if not override.is_sweep_override()]
    base = compose(fixed)  # the preset's own sweeper params need the preset, not the swept values
    params = dict(base.hydra.sweeper.get("params") or {})
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):  # glob() reads the groups' options
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + overrides)
    choices = []
    for override in parsed:
        key = override.get_key_element()
        values = override.sweep_string_iterator() if override.is_sweep_override() else [override.get_value_string()]
        choices.append([f"{key}={value}" for value in values])
    return [list(job) for job in itertools.product(*choices)]
