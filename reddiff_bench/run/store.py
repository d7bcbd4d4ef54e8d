"""The results store of one run directory: who owns it, what state it is in, which config its rows
belong to, and the rows themselves. Re-running the same command resumes a run from its rows.

Files of a run directory (besides the outputs the runner writes):

* ``run.json``: the run's identity (``identity``) and its hash, written when the run starts. A
  later run into the same directory must have the same one (``dataset.num_images`` aside: more
  images extend a run); otherwise it is refused, naming the keys that differ.
* ``state.json``: ``running`` (with pid, host, start), ``complete``, ``failed`` (with the error)
  or ``interrupted`` (Ctrl-C or SIGTERM, with the signal); a run that was killed stays
  ``running`` with no live owner. All but ``complete`` are resumed by the same command.
* ``metrics.csv``: one row per image, rewritten atomically (unique temporary name, fsync, rename)
  after every batch, so a run killed at any moment keeps every finished row. In a distributed
  run each rank writes ``rows/rank<r>.csv`` and rank 0 merges them.
* ``.lock`` / ``owner.json``: a run holds the lock while it owns the directory; a second run into
  a locked directory is refused, naming the holder. The lock is a kernel file lock: a killed run
  releases it.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from ..errors import ConfigError
from ..files import atomic_write_text
from .identity import SCHEMA, config_hash, migrate

log = logging.getLogger(__name__)

ID_COLUMNS = ["run", "solver", "task", "dataset", "model", "seed", "image_id", "status"]
COST_COLUMNS = ["nfe", "vjp", "decoder_calls", "decoder_vjp", "encoder_calls", "encoder_vjp", "seconds", "peak_mem_mb",
                "peak_mem_kind"]
# columns that describe how a row was computed rather than what it is (excluded from comparisons)
PROVENANCE_COLUMNS = ["seconds", "peak_mem_mb", "peak_mem_kind", "batch_size", "rank", "world_size", "gpu_slot"]


def config_differences(old: dict[str, Any], new: dict[str, Any], old_label: str = "in the directory",
                       new_label: str = "now") -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k, '<absent>')!r} {old_label}, {new.get(k, '<absent>')!r} {new_label}"
            for k in keys if json.dumps(old.get(k), default=str) != json.dumps(new.get(k), default=str)]


TEXT_COLUMNS = {"image_id": str, "config_hash": str, "measurement_hash": str, "run": str}


def read_rows(path: Path, **kwargs: Any) -> pd.DataFrame:
    """A table of rows (metrics.csv, a rank's file, a study's rows.csv.gz) with its ids as text:
    an image named ``00000`` keeps its id, never the number 0. A file that is not such a table is
    refused naming it, what is wrong and what to do; nothing is overwritten."""
    try:
        frame = pd.read_csv(path, dtype=TEXT_COLUMNS, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{path} is not a table of rows ({type(err).__name__}: {err}). It was not written by "
                          f"reddiff_bench, or was cut short: move it away (or delete it) and run again; the "
                          f"images without rows are solved again.") from None
    if "image_id" not in frame.columns and len(frame.columns) and "nrows" not in kwargs:
        raise ConfigError(f"{path} has no image_id column: it is not a table of rows. Move it away (or delete it) "
                          f"and run again.")
    return frame


DATASET_IDS = "dataset_ids.json"  # the image ids of the run's dataset as it last ran


def dataset_ids(run_dir: Path) -> set[str] | None:
    """The ids a run's dataset held when it last ran (None for runs that did not record them)."""
    path = Path(run_dir) / DATASET_IDS
    return set(json.loads(path.read_text())) if path.is_file() else None


def read_state(run_dir: Path) -> dict[str, Any]:
    """A run directory's ``state.json`` ({} when there is none, or it cannot be read)."""
    try:
        return json.loads((Path(run_dir) / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def run_state(run_dir: Path) -> str:
    """``running`` (or killed while running), ``complete``, ``failed``, or ``unknown``."""
    return str(read_state(run_dir).get("state", "unknown"))


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


class RunOwnership:
    """The lock of a run directory (``.lock``), and who holds it (``owner.json``)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._lock = None

    def acquire(self) -> None:

        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.run_dir / ".lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            holder = self._owner()
            raise ConfigError(f"run directory {self.run_dir} is in use by another run ({holder}). Wait for it to "
                              f"finish (re-running then resumes), or give this run its own directory "
                              f"(hydra.run.dir=... or another experiment_name).") from None
        self._lock = lock
        atomic_write_text(self.run_dir / "owner.json", json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(), "argv": sys.argv}, indent=2) + "\n")

    def _owner(self) -> str:
        try:
            owner = json.loads((self.run_dir / "owner.json").read_text())
            return f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
        except (OSError, ValueError, KeyError):
            return "owner unknown"

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class RunStore:
    """Rows, config and state of one run directory, for one rank of ``world_size``."""

    def __init__(self, run_dir: str | Path, ident: dict[str, Any], rank: int = 0, world_size: int = 1):
        """``ident``: the run's identity (``identity.identity`` of its resolved config)."""
        self.run_dir = Path(run_dir)
        self.relevant, self.chash = ident, config_hash(ident)
        self.rank, self.world_size = int(rank), int(world_size)
        self.csv_path = self.run_dir / "metrics.csv"
        self.summary_path = self.run_dir / "summary.json"
        self.state_path = self.run_dir / "state.json"
        self.rank_dir = self.run_dir / "rows"
        self.rows: dict[str, dict[str, Any]] = {}  # image_id -> row (rows of earlier runs included)
        self.new_rows: list[dict[str, Any]] = []  # written by this process

    # --- config and state ------------------------------------------------------------------------
    def check_config(self) -> None:
        """Refuse a directory whose rows belong to another result-relevant config (naming the keys);
        record the config on first use."""
        path = self.run_dir / "run.json"
        if path.is_file():
            try:
                record = json.loads(path.read_text())
                old = record["result_relevant"]
            except (ValueError, KeyError, TypeError) as err:
                raise ConfigError(f"{path} is not a run record ({err}); this directory was not written by this "
                                  f"version of reddiff_bench. Choose another hydra.run.dir.") from err
            if old.get("schema") != SCHEMA:
                old = self._migrate(record)
            differences = config_differences(old, self.relevant)
            if differences:
                raise ConfigError(f"run directory {self.run_dir} holds rows of another configuration; rows are "
                                  f"never mixed. Keys that differ: " + "; ".join(differences) + ". Re-run with the "
                                  "directory's settings to resume it, or give this run its own directory "
                                  "(hydra.run.dir=..., or another experiment_name).")
            return
        if self.csv_path.is_file():
            raise ConfigError(f"{self.csv_path} exists but {path} does not: rows of unknown configuration (an older "
                              f"version's run?). Move them away, or choose another hydra.run.dir.")
        atomic_write_text(path, json.dumps({"config_hash": self.chash, "result_relevant": self.relevant,
                                            "created": _now()}, indent=2, default=str) + "\n")

    def _migrate(self, record: dict[str, Any]) -> dict[str, Any]:
        """A directory of an earlier identity scheme: when it stands for this run, its record and its
        rows take the current hash and the run continues; else its identity is returned, to be
        refused with the keys that differ."""
        old = migrate(record["result_relevant"])
        if config_differences(old, self.relevant):
            return old
        old_hash = str(record.get("config_hash"))
        for table in [self.csv_path, *sorted(self.rank_dir.glob("rank*.csv"))]:
            if table.is_file():
                frame = read_rows(table)
                if "config_hash" in frame:
                    frame.loc[frame["config_hash"].astype(str) == old_hash, "config_hash"] = self.chash
                atomic_write_text(table, frame.to_csv(index=False))
        atomic_write_text(self.run_dir / "run.json", json.dumps(
            {"config_hash": self.chash, "result_relevant": self.relevant, "created": record.get("created"),
             "migrated": {"from_schema": record["result_relevant"].get("schema", 1), "from_hash": old_hash,
                          "at": _now()}}, indent=2, default=str) + "\n")
        log.info("%s: run record migrated to identity schema %d (hash %s -> %s)", self.run_dir, SCHEMA, old_hash,
                 self.chash)
        return self.relevant

    def state(self) -> dict[str, Any]:
        return read_state(self.run_dir)

    def set_state(self, state: str, **info: Any) -> None:
        record = {**self.state(), "state": state, "updated": _now(), "pid": os.getpid(),
                  "host": socket.gethostname(), "world_size": self.world_size, **info}
        if state == "running":
            record.pop("error", None)
            record.pop("finished", None)
            record["started"] = time.time()
        else:
            record["finished"] = time.time()
        atomic_write_text(self.state_path, json.dumps(record, indent=2, default=str) + "\n")

    # --- rows ------------------------------------------------------------------------------------
    def load(self) -> None:
        """Rows already on disk (metrics.csv and any rank files), one per image id, the newest last."""
        frames = [read_rows(p) for p in [self.csv_path, *sorted(self.rank_dir.glob("rank*.csv"))] if p.is_file()]
        for frame in frames:
            frame = frame.astype(object).where(frame.notna(), None)
            for row in frame.to_dict("records"):
                row = {k: (math.nan if v is None else v) for k, v in row.items()}
                if row.get("config_hash") == self.chash:
                    self.rows[str(row["image_id"])] = row

    @property
    def done(self) -> set[str]:
        return set(self.rows)

    def append(self, rows: list[dict[str, Any]], order: dict[str, int]) -> None:
        """Add rows and persist them atomically: the whole table (single process) or this rank's file."""
        for row in rows:
            self.rows[str(row["image_id"])] = row
        self.new_rows.extend(rows)
        if self.world_size == 1:
            self.write(order)
        else:
            self.rank_dir.mkdir(exist_ok=True)
            atomic_write_text(self.rank_dir / f"rank{self.rank}.csv", _table(self.new_rows).to_csv(index=False))

    def write(self, order: dict[str, int]) -> None:
        """``metrics.csv`` with every row, in the dataset's order (ids outside it last)."""
        atomic_write_text(self.csv_path, self.frame(order).to_csv(index=False))

    def has_rank_files(self) -> bool:
        return any(self.rank_dir.glob("rank*.csv"))

    def merge(self, order: dict[str, int]) -> None:
        """Rank 0 after the others finished: every rank's rows into metrics.csv, rank files removed."""
        self.load()
        self.write(order)
        for path in self.rank_dir.glob("rank*.csv"):
            path.unlink()
        if self.rank_dir.is_dir() and not any(self.rank_dir.iterdir()):
            self.rank_dir.rmdir()

    def frame(self, order: dict[str, int] | None = None) -> pd.DataFrame:
        rows = list(self.rows.values())
        if order is not None:
            rows.sort(key=lambda r: order.get(str(r["image_id"]), len(order)))
        return _table(rows)

    def summary(self, ids: set[str] | None = None) -> dict[str, Any]:
        """Means over the images whose status is ``ok`` (numeric columns), plus counts; with ``ids``,
        over those images only (rows of images outside the dataset stay on disk, uncounted)."""
        frame = self.frame()
        if frame.empty:
            return {"num_images": 0, "num_ok": 0, "num_diverged": 0}
        outside = 0
        if ids is not None:
            inside = frame["image_id"].astype(str).isin(ids)
            outside = int((~inside).sum())
            frame = frame[inside]
        ok = frame[frame["status"] == "ok"]
        numeric = ok.select_dtypes("number").drop(columns=["seed", "batch_size", "sigma_y", "n_samples", "rank",
                                                           "world_size", "gpu_slot"], errors="ignore")
        summary: dict[str, Any] = {
            "num_images": int(len(frame)),
            "num_ok": int(len(ok)),
            "num_diverged": int((frame["status"] == "diverged").sum()),
        }
        if outside:
            summary["num_rows_outside_dataset"] = outside
        for column in numeric.columns:
            value = numeric[column].mean()
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            summary[column] = None if missing else float(value)
        if "peak_mem_kind" in frame.columns:
            summary["peak_mem_kind"] = ",".join(sorted(set(frame["peak_mem_kind"].dropna().astype(str))))
        return summary

    def write_summary(self, extra: dict[str, Any], ids: set[str] | None = None) -> dict[str, Any]:
        """``summary.json``: the means over ok images, with run-level values (``extra``) beside them;
        NaN (an unavailable metric) is written as null."""
        summary = {**extra, **self.summary(ids)}
        summary = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n")
        return summary


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    first = [c for c in ID_COLUMNS if c in frame.columns]
    last = [c for c in COST_COLUMNS if c in frame.columns]
    middle = [c for c in frame.columns if c not in first and c not in last]
    return frame[first + middle + last]
