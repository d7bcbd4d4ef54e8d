"""Loggers listen to a run; they never feed anything back into it.

``WandbLogger`` runs offline unless ``mode=online`` (then ``WANDB_API_KEY`` or ``wandb login``
is needed); an offline run lands in ``<run_dir>/wandb/offline-run-*`` and is uploaded later
with ``wandb sync <that dir>``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


class NullLogger:
    """Logs nothing (``logger=none``)."""

    def start(self, run_dir: Path, config: dict[str, Any], name: str, run_id: str | None = None) -> None: ...

    def log_step(self, step: int, values: dict[str, float]) -> None: ...

    def log_rows(self, rows: pd.DataFrame) -> None: ...

    def log_summary(self, summary: dict[str, Any]) -> None: ...

    def log_image(self, key: str, path: Path) -> None: ...

    def finish(self) -> None: ...


class WandbLogger(NullLogger):
    def __init__(self, project: str = "reddiff_bench", mode: str = "offline", entity: str | None = None,
                 group: str | None = None, tags: list[str] | None = None):
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"W&B mode must be offline, online or disabled, got {mode!r}")
        self.project, self.mode, self.entity, self.group = project, mode, entity, group
        self.tags = list(tags or [])
        self.run = None

    def start(self, run_dir: Path, config: dict[str, Any], name: str, run_id: str | None = None) -> None:
        """``run_id``: the same id for every resumption of a run directory, so that a resumed run
        continues its W&B run instead of starting a second one."""
        import hashlib

        import wandb

        wandb_id = None
        if run_id is not None:
            wandb_id = hashlib.sha256(f"{Path(run_dir).resolve()}:{run_id}".encode()).hexdigest()[:16]
        self.run = wandb.init(project=self.project, entity=self.entity, group=self.group, tags=self.tags,
                              mode=self.mode, dir=str(run_dir), config=config, name=name, id=wandb_id,
                              resume="allow" if wandb_id else None,
                              settings=wandb.Settings(silent=True, console="off"))
        self.run.define_metric("solver_step")
        self.run.define_metric("solver/*", step_metric="solver_step")

    def log_step(self, step: int, values: dict[str, float]) -> None:
        self.run.log({"solver_step": step, **{f"solver/{k}": v for k, v in values.items()}})

    def log_rows(self, rows: pd.DataFrame) -> None:
        import wandb

        self.run.log({"images": wandb.Table(dataframe=rows.astype(object).where(rows.notna(), None))})

    def log_summary(self, summary: dict[str, Any]) -> None:
        self.run.summary.update(summary)

    def log_image(self, key: str, path: Path) -> None:
        import wandb

        self.run.log({key: wandb.Image(str(path))})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
