"""One sweep job per GPU on one node: ``hydra/launcher=gpus``.

The launcher is hydra-joblib-launcher (a process pool of ``n_jobs`` workers, one per GPU). Neither
it nor submitit's local executor pins a job to a device (submitit hands every job the same
``CUDA_VISIBLE_DEVICES``), so each worker claims a device slot itself: the first free one of
``launch.devices`` (all visible GPUs by default), held with a file lock named after the device
under the sweep directory for the worker's lifetime (two sweeps of one experiment on disjoint
devices share the folder and never collide). With as many workers as slots, every job finds a free slot, never two
jobs run on one GPU, and a worker that dies releases its slot. Each row records the ``gpu_slot``
its job ran on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from ..errors import ConfigError

log = logging.getLogger(__name__)

_HELD: dict[str, tuple[int, object]] = {}  # slot folder -> (slot index, lock) held by this process


def available_devices(devices: list[int] | None) -> list[int]:
    """The devices to hand out: ``devices`` when given, else every visible CUDA device."""
    if devices:
        return [int(d) for d in devices]
    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError("hydra/launcher=gpus found no CUDA device. Run the sweep with the basic launcher "
                          "(drop hydra/launcher=gpus), or list the slots to hand out: launch.devices=[0,1].")
    return list(range(count))


def slot_count(devices: list[int] | None) -> int:
    """The number of workers of the gpus launcher (a Hydra resolver: ``${launch_slots:...}``)."""
    try:
        return len(available_devices(list(devices) if devices else None))
    except ConfigError:
        return 1  # composition must not fail here; the job says why when it claims a slot


def claim_slot(folder: str | Path, devices: list[int] | None) -> tuple[int, int]:
    """This process's slot ``(index, device)``: claimed once (the first free lock among
    ``folder/device<id>.lock`` for the ids of ``devices``) and kept until the process ends."""

    devices = available_devices(devices)
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _HELD:
        index = _HELD[key][0]
        return index, devices[index]
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(len(devices)):  # locks are named by device: sweeps on disjoint devices never collide
        lock = FileLock(str(folder / f"device{devices[index]}.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            continue
        _HELD[key] = (index, lock)
        log.info("gpu slot %d (device %d) for this worker", index, devices[index])
        return index, devices[index]
    raise ConfigError(f"all {len(devices)} GPU slots under {folder} are taken: the gpus launcher runs at most one "
                      f"job per device (hydra.launcher.n_jobs must not exceed the number of devices).")


def job_device(slot_folder: str | Path, devices: list[int] | None, device: torch.device) -> tuple[torch.device, int]:
    """The device of a job started by the gpus launcher and its slot index: ``cuda:<slot's device>``
    when CUDA is there; on a machine without CUDA (explicit ``launch.devices``, e.g. in tests) the
    slot is claimed and recorded, and the job stays on ``device``."""
    index, device_id = claim_slot(slot_folder, devices)
    if torch.cuda.is_available() and device.type != "cpu":
        torch.cuda.set_device(device_id)
        return torch.device("cuda", device_id), index
    return device, index
