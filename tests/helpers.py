"""Test helpers: Hydra composition, a reader of offline W&B run files, a diverging solver."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from reddiff_bench.run.settings import compose
from reddiff_bench.solvers import SolverResult


def compose_config(overrides: list[str], run_dir: Path | None = None) -> DictConfig:
    """The root config with ``overrides``, Hydra's own node included (``${hydra:...}`` resolves)."""
    cfg = compose(overrides)
    if run_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


def wandb_records(path: Path):
    """Protobuf records of an offline W&B run file (LevelDB log format: 32 KiB blocks of chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    block, pos, pending, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            pos += left - 7
            continue
        chunk, pos = data[pos : pos + length], pos + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            out.append(pending + chunk)
    for raw in out:
        record = pb.Record()
        record.ParseFromString(raw)
        yield record


def wandb_summary(run_dir: Path) -> dict[str, str]:
    """The summary (key -> JSON value) that an offline W&B run under ``run_dir`` would sync."""
    files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no offline W&B run under {run_dir}"
    summary: dict[str, str] = {}
    for record in wandb_records(files[-1]):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = item.value_json
    return summary


class DivergesOnSecondImage:
    """A test solver: returns the pseudo-inverse, with NaN for the second image of each batch."""

    def solve(self, prior, operator, y, *, sigma_y, generators, callback=None):
        x0 = operator.init_estimate(y).clone()
        if x0.shape[0] > 1:
            x0[1] = float("nan")
        return SolverResult(x0=x0)


class SquareDegradation:
    """A nonlinear test task without an SVD: y = x^2."""

    def sample_artifacts(self, image_shape, generator):
        return {}

    def operator(self, artifacts, image_shape):
        from reddiff_bench.operators.base import Operator

        class Square(Operator):
            def forward(self, x):
                return x**2

        return Square()


def compose_task(name: str, *overrides: str):
    """The task of conf/task/<name>.yaml with ``overrides``, instantiated."""
    return instantiate(compose_config([f"task={name}", *overrides]).task, _convert_="all")


def relative_error(a, b) -> float:
    """``||a - b|| / ||b||`` over all entries, in float64 (arrays or tensors)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))

