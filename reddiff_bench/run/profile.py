"""Memory over a solve, step by step: a listener on the solver's step callback.

After every solver step it records the memory in use: on CUDA the bytes allocated by tensors and
reserved by the caching allocator (``torch.cuda.memory_allocated`` / ``memory_reserved``); on
the CPU the process's resident set (``/proc/self/statm``). Rows ``(batch, step, t, bytes,
reserved_bytes, kind)`` go to ``memory.csv`` in the run directory (appended batch by batch, so
a resumed run adds its batches), and the first batch's curve to the logger keyed on the solver
step. With ``memory_snapshot`` on CUDA, the allocator's history of the first batch is recorded
(``torch.cuda.memory._record_memory_history``) and dumped to ``memory_snapshot.pickle`` for
PyTorch's memory viewer (https://pytorch.org/memory_viz).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

COLUMNS = ["batch", "step", "t", "bytes", "reserved_bytes", "kind"]
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """The process's resident set size now (Linux), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class MemoryProfile:
    """Collects one row per solver step of each batch; ``end_batch()`` appends them to ``memory.csv``."""

    def __init__(self, run_dir: Path, device: torch.device, logger=None, snapshot: bool = False,
                 name: str = "memory.csv"):
        self.path = Path(run_dir) / name
        self.device = torch.device(device)
        self.logger = logger
        self.snapshot_path = Path(run_dir) / "memory_snapshot.pickle" if snapshot else None
        self.batch = self._next_batch()
        self.rows: list[dict[str, Any]] = []
        self.first = self.batch == 0  # the run's first batch, not a resumed attempt's
        if snapshot and self.device.type != "cuda":
            log.warning("profile.memory_snapshot needs CUDA; on %s only memory.csv is written", self.device)
            self.snapshot_path = None

    def _next_batch(self) -> int:
        if not self.path.is_file():
            return 0
        batches = []
        with open(self.path) as f:
            for row in csv.DictReader(f):
                try:
                    batches.append(int(row["batch"]))
                except (TypeError, ValueError):  # a line cut short by a kill
                    continue
        return max(batches, default=-1) + 1

    def start_batch(self) -> None:
        if self.first and self.snapshot_path is not None:
            torch.cuda.memory._record_memory_history(max_entries=200_000)

    def __call__(self, step: int, info: dict[str, Any]) -> None:
        if self.device.type == "cuda":
            used, reserved, kind = (torch.cuda.memory_allocated(self.device), torch.cuda.memory_reserved(self.device),
                                    "cuda_allocated")
        else:
            used, reserved, kind = resident_bytes(), None, "cpu_rss"
            if used is None:
                return
        t = info.get("t")
        t = float(t.float().mean()) if isinstance(t, torch.Tensor) else (float(t) if t is not None else None)
        self.rows.append(dict(batch=self.batch, step=step, t=t, bytes=used, reserved_bytes=reserved, kind=kind))
        if self.first and self.logger is not None:
            self.logger.log_step(step, {"memory_mb": used / 2**20})

    def end_batch(self) -> None:
        """Append this batch's rows (and dump the allocator snapshot after the first batch)."""
        if self.first and self.snapshot_path is not None:
            torch.cuda.memory._dump_snapshot(str(self.snapshot_path))
            torch.cuda.memory._record_memory_history(enabled=None)
        if self.rows:
            new = not self.path.is_file()
            with open(self.path, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerows(self.rows)
                f.flush()
                os.fsync(f.fileno())
        self.rows, self.first = [], False
        self.batch += 1
