"""Loggers listen to a run; they never feed anything back into it.

``WandbLogger`` runs offline unless ``mode=online`` (then ``WANDB_API_KEY`` or ``wandb login``
is needed); an offline run lands in ``<run_dir>/wandb/offline-run-*`` and is uploaded later
with ``wandb sync <that dir>``. W&B cannot resume an offline run: each resumption writes one
more folder with the same id, and ``wandb sync`` keeps one folder per id, not their union. So
the newest folder is made complete on its own: the first batch's per-step curves are also kept
in ``<run_dir>/wandb/solver_steps.jsonl`` and replayed into a resumed offline run that did not
solve the first batch itself; the rows, summary and grid are logged from disk at the end anyway.
Runs of one study or sweep share a group, the job type is the
solver and the tags are the task, the model and the study's scale, so dashboards group and filter
by them; summaries of the paper's metrics keep their best value by direction (max or min).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ..metrics.registry import METRICS

log = logging.getLogger(__name__)


class NullLogger:
    """Logs nothing (``logger=none``)."""

    def start(self, run_dir: Path, config: dict[str, Any], name: str, run_id: str | None = None) -> None: ...

    def log_step(self, step: int, values: dict[str, float]) -> None: ...

    def log_rows(self, rows: pd.DataFrame, images: dict[str, dict[str, Any]] | None = None) -> None: ...

    def log_summary(self, summary: dict[str, Any]) -> None: ...

    def log_image(self, key: str, path: Path) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


def run_tags(config: dict[str, Any], extra: list[str]) -> list[str]:
    """The tags of a run: its task, its model and its study's scale (after ``extra``)."""
    study = config.get("study") or {}
    model = config.get("model") or {}
    model_name = model.get("name") or model.get("checkpoint_name") or str(model.get("_target_", "")).rsplit(".", 1)[-1]
    tags = [*extra, str((config.get("task") or {}).get("name", "")), str(model_name)]
    if study.get("scale"):
        tags.append(f"scale:{study['scale']}")
    return [t for t in dict.fromkeys(tags) if t]


class WandbLogger(NullLogger):
    def __init__(self, project: str = "reddiff_bench", mode: str = "offline", entity: str | None = None,
                 group: str | None = None, tags: list[str] | None = None, job_type: str | None = None):
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"W&B mode must be offline, online or disabled, got {mode!r}")
        self.project, self.mode, self.entity, self.group = project, mode, entity, group
        self.job_type = job_type
        self.tags = list(tags or [])
        self.run = None
        self.steps_file: Path | None = None
        self.logged_steps = False

    def start(self, run_dir: Path, config: dict[str, Any], name: str, run_id: str | None = None) -> None:
        """``run_id``: the same id for every resumption of a run directory, so that a resumed run
        continues its W&B run instead of starting a second one."""

        import wandb  # heavy, optional: imported when used

        wandb_id = None
        if run_id is not None:
            wandb_id = hashlib.sha256(f"{Path(run_dir).resolve()}:{run_id}".encode()).hexdigest()[:16]
        self.run = wandb.init(project=self.project, entity=self.entity,
                              group=self.group or config.get("experiment_name"), job_type=self.job_type,
                              tags=run_tags(config, self.tags), mode=self.mode, dir=str(run_dir), config=config,
                              name=name, id=wandb_id, resume="allow" if wandb_id else None,
                              settings=wandb.Settings(silent=True, console="off"))
        self.steps_file, self.logged_steps = Path(run_dir) / "wandb" / "solver_steps.jsonl", False
        self.run.define_metric("solver_step")
        self.run.define_metric("solver/*", step_metric="solver_step")

        for metric, spec in METRICS.items():  # summaries with their direction (best = max or min)
            if spec.direction:
                self.run.define_metric(metric, summary="max" if spec.direction > 0 else "min")

    def log_step(self, step: int, values: dict[str, float]) -> None:
        record = {"solver_step": step, **{f"solver/{k}": v for k, v in values.items()}}
        self.run.log(record)
        with open(self.steps_file, "w" if not self.logged_steps else "a") as f:  # a new attempt starts it anew
            f.write(json.dumps(record) + "\n")
        self.logged_steps = True

    def replay_steps(self) -> None:
        """A resumed offline run that did not solve the first batch logs its curves from disk, so
        that its folder alone holds the whole run (online, the server already has them)."""
        if self.mode != "offline" or self.logged_steps or self.steps_file is None or not self.steps_file.is_file():
            return
        for line in self.steps_file.read_text().splitlines():
            try:
                self.run.log(json.loads(line))
            except json.JSONDecodeError:  # the last line of an attempt killed mid-write: the curve ends before it
                log.warning("%s: an incomplete line is left out of the replayed curves", self.steps_file)
        self.logged_steps = True

    def log_rows(self, rows: pd.DataFrame, images: dict[str, dict[str, Any]] | None = None) -> None:
        """The rows as a table (``images``); ``images`` (image id -> ``ground_truth``,
        ``measurement``, ``output`` as (H, W, C) arrays in [0, 1]) adds them as image columns."""
        import wandb  # heavy, optional: imported when used

        self.replay_steps()

        frame = rows.astype(object).where(rows.notna(), None)
        if images and "image_id" in frame:
            frame = frame.copy()
            for column in ("ground_truth", "measurement", "output"):
                frame[column] = [wandb.Image(images[i][column]) if i in images else None
                                 for i in frame["image_id"].astype(str)]
        self.run.log({"images": wandb.Table(dataframe=frame)})

    def log_summary(self, summary: dict[str, Any]) -> None:
        self.run.summary.update(summary)

    def log_image(self, key: str, path: Path) -> None:
        import wandb  # heavy, optional: imported when used

        self.run.log({key: wandb.Image(str(path))})

    def finish(self, exit_code: int = 0) -> None:
        """Closes the run (a run that stopped early with its exit status: W&B marks it failed)."""
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
