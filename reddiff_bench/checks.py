"""Checks of numeric settings, used by every solver, task and dataset before any work: a bad value
is refused with a message that names its key and the allowed range."""

from __future__ import annotations

import math
from typing import Any


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
