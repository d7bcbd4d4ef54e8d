"""Checks of numeric settings, run before any work: a bad value is refused with a message that
names its key and the allowed range (in a sweep, the job is refused and the sweep goes on)."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig


def check_number(key: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 integer: bool = False, above: float | None = None) -> None:
    """Raise ``ValueError`` naming ``key`` unless ``value`` is a finite number (an integer when
    ``integer``) within [minimum, maximum] (or strictly above ``above``)."""
    ranges = []
    if minimum is not None:
        ranges.append(f">= {minimum}")
    if above is not None:
        ranges.append(f"> {above}")
    if maximum is not None:
        ranges.append(f"<= {maximum}")
    allowed = f"{'an integer' if integer else 'a finite number'}{' ' + ' and '.join(ranges) if ranges else ''}"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = ((minimum is None or value >= minimum) and (maximum is None or value <= maximum)
              and (above is None or value > above))
    if not ok:
        raise ValueError(f"{key} must be {allowed}, got {value!r}")


def check_choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {value!r}")


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
    """The run's own numeric settings (the groups' constructors check theirs)."""
    from omegaconf import OmegaConf

    from .errors import ConfigError

    for key, limits in RUN_SETTINGS:
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        try:
            check_number(key, value, **limits)
        except ValueError as err:
            raise ConfigError(str(err)) from None
