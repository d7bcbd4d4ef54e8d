"""Published settings: the values each solver's authors used, resolved into the solver's config.

A solver YAML writes ``zeta: ${published:dps.zeta,1.0}``. The resolver looks the key up in the
experiment's top-level ``published`` block (a preset that reproduces a paper, e.g. all solvers at
the RED-Diff paper's settings), then in the task's ``task.published`` (settings the official code
ties to a kind of task, e.g. DPS's step size for inpainting), then falls back to the default.
A command-line override (``solver.zeta=0.7``) replaces the interpolation and wins over all three.
Each value's YAML comment cites the file or paper it comes from.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

_ABSENT = object()
SOURCES = ("published", "task.published")  # experiment first, then task


def published(path: str, default: Any = None, *, _root_: Any) -> Any:
    """The value at ``published.<path>``, else ``task.published.<path>``, else ``default``."""
    for prefix in SOURCES:
        value = OmegaConf.select(_root_, f"{prefix}.{path}", default=_ABSENT)
        if value is not _ABSENT:
            return value
    return default
