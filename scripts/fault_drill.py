"""The fault drill: kill -9, SIGTERM and SIGINT at random points of a sweep, then the same command,
under the basic and gpus launchers and under torchrun with 2 gloo ranks, on the CPU.

    .venv/bin/python scripts/fault_drill.py [--faults 3] [--seed 0] [--out DIR]

For each setting a clean run makes the reference rows; then the same command is started, hit by a
signal at a random moment once rows exist (``--faults`` times, cycling through the three
signals), and finally run to its end. Every job's rows are compared with the reference's: rows
lost (an image without its row), rows duplicated (an image with two), rows changed (a value that
differs beyond float32 rounding). The drill prints those counts and the faults it injected, and
exits 1 unless all three counts are 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
BASE = ["model.n_components=3", "model.n_crops=1200", "model.max_iter=10", "logger=none", "progress=false",
        "metrics.fid=false", "solver.steps=100", "batch_size=1", "dataset.num_images=6"]
SETTINGS = {
    "basic": ["-m", "solver=reddiff,ddrm", *BASE],
    "gpus": ["-m", "solver=reddiff,ddrm", "hydra/launcher=gpus", "launch.devices=[0,1]", *BASE],
    "torchrun": ["solver=reddiff", *BASE],
}
IGNORED = {"seconds", "peak_mem_mb", "peak_mem_kind", "batch_size", "rank", "world_size", "gpu_slot", "run"}
SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]


def command(setting: str, out: Path) -> list[str]:
    args = [*SETTINGS[setting], f"paths.output_dir={out}"]
    if setting == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                "reddiff_bench", *args, f"hydra.run.dir={out}/run"]
    return [sys.executable, "-m", "reddiff_bench", *args]


def rows(out: Path) -> dict[str, pd.DataFrame]:
    """Every job's rows under ``out``, by job folder name (rank files of an unfinished merge too)."""
    found = {}
    for path in sorted(out.rglob("metrics.csv")):
        tables = [path, *sorted((path.parent / "rows").glob("*.csv"))]
        frames = [pd.read_csv(p, dtype={"image_id": str}) for p in tables]
        found[path.parent.name] = pd.concat(frames, ignore_index=True)
    return found


def compare(reference: dict[str, pd.DataFrame], result: dict[str, pd.DataFrame]) -> tuple[int, int, int]:
    lost = duplicated = changed = 0
    for job, ref in reference.items():
        got = result.get(job, pd.DataFrame(columns=ref.columns))
        duplicated += int(got["image_id"].duplicated().sum())
        got = got.drop_duplicates("image_id", keep="last").set_index("image_id")
        ref = ref.set_index("image_id")
        lost += int((~ref.index.isin(got.index)).sum())
        for image_id in ref.index.intersection(got.index):
            for column in ref.columns:
                if column in IGNORED:
                    continue
                a, b = ref.at[image_id, column], got.at[image_id, column] if column in got.columns else None
                if isinstance(a, (float, np.floating)) and not pd.isna(a):
                    ok = b is not None and not pd.isna(b) and abs(float(a) - float(b)) <= 1e-5 * max(1.0, abs(a))
                else:
                    ok = str(a) == str(b)
                if not ok:
                    changed += 1
                    break
    return lost, duplicated, changed


def drill(setting: str, faults: int, rng: random.Random, root: Path) -> tuple[int, int, int, int]:
    clean = root / setting / "clean"
    subprocess.run(command(setting, clean), cwd=REPO, env=ENV, capture_output=True, check=True, timeout=1800)
    reference = rows(clean)
    hit = root / setting / "hit"
    injected = 0
    for k in range(faults):
        sig = SIGNALS[k % len(SIGNALS)]
        proc = subprocess.Popen(command(setting, hit), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 600
        while not any(len(f) for f in rows(hit).values()) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))  # a random moment once the run is under way
        if proc.poll() is None:  # to the whole process group, as a terminal's Ctrl-C or a scheduler does
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
                injected += 1
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=300)
        with contextlib.suppress(ProcessLookupError):  # after a scheduler's grace period nothing of the job survives
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    final = subprocess.run(command(setting, hit), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=1800)
    if final.returncode != 0:
        print(f"{setting}: the final run failed:\n{final.stderr[-2000:]}", file=sys.stderr)
    lost, duplicated, changed = compare(reference, rows(hit))
    return injected, lost, duplicated, changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=3, help="signals per setting (cycling kill -9, TERM, INT)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = args.out or Path(tempfile.mkdtemp(prefix="fault_drill_"))
    totals = np.zeros(4, dtype=int)
    print(f"{'setting':<10} {'faults':>6} {'lost':>5} {'duplicated':>10} {'changed':>8}")
    for setting in args.settings.split(","):
        counts = drill(setting, args.faults, rng, root)
        totals += counts
        print(f"{setting:<10} {counts[0]:>6} {counts[1]:>5} {counts[2]:>10} {counts[3]:>8}", flush=True)
    print(f"{'all':<10} {totals[0]:>6} {totals[1]:>5} {totals[2]:>10} {totals[3]:>8}")
    return 0 if totals[1:].sum() == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
