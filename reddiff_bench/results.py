"""The results store of one run: per-image rows in ``metrics.csv`` and means in ``summary.json``.

Every write replaces the file atomically (write to a temporary file, fsync, rename), so a run
killed at any moment leaves a complete CSV of the images finished so far. Rows carry a
``config_hash`` of the result-relevant configuration (model, task, dataset, solver, seed).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

ID_COLUMNS = ["run", "solver", "task", "dataset", "model", "seed", "image_id", "status"]
COST_COLUMNS = ["nfe", "vjp", "seconds", "peak_mem_mb", "peak_mem_kind"]


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def config_hash(result_relevant: dict[str, Any], length: int = 12) -> str:
    return hashlib.sha256(json.dumps(result_relevant, sort_keys=True, default=str).encode()).hexdigest()[:length]


class ResultsStore:
    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / "metrics.csv"
        self.summary_path = self.run_dir / "summary.json"
        self.rows: list[dict[str, Any]] = []

    def append(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)
        atomic_write_text(self.csv_path, self.frame().to_csv(index=False))

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows)
        first = [c for c in ID_COLUMNS if c in frame.columns]
        last = [c for c in COST_COLUMNS if c in frame.columns]
        middle = [c for c in frame.columns if c not in first and c not in last]
        return frame[first + middle + last]

    def summary(self) -> dict[str, Any]:
        """Means over the images whose status is ``ok`` (numeric columns), plus counts."""
        frame = self.frame()
        ok = frame[frame["status"] == "ok"]
        numeric = ok.select_dtypes("number").drop(columns=["seed", "batch_size", "sigma_y", "n_samples"], errors="ignore")
        summary: dict[str, Any] = {
            "num_images": int(len(frame)),
            "num_ok": int(len(ok)),
            "num_diverged": int((frame["status"] == "diverged").sum()),
        }
        for column in numeric.columns:
            value = numeric[column].mean()
            summary[column] = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        for column in ("peak_mem_kind",):
            if column in frame.columns:
                summary[column] = ",".join(sorted(set(frame[column].dropna().astype(str))))
        return summary

    def write_summary(self, extra: dict[str, Any]) -> dict[str, Any]:
        """``summary.json``: the means over ok images, with run-level values (``extra``) beside them;
        NaN (an unavailable metric) is written as null."""
        summary = {**extra, **self.summary()}
        summary = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
        return summary
