"""One run over many processes: ``torchrun --nproc_per_node=N -m reddiff_bench ...``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; each rank joins the process group
(NCCL on CUDA, gloo on the CPU), takes every ``world_size``-th image of the run
(``shard``), solves it on its own device (``cuda:LOCAL_RANK``) and writes its own rows; rank 0
merges them, computes the run-level metrics and logs once. Images keep their own seeds, so the
rows equal those of a single process (each row records the ``rank`` and ``world_size`` that
solved it). Without torchrun's variables everything here is a no-op for a single process.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, indices: Sequence[int]) -> list[int]:
        """This rank's share of ``indices``: every ``world_size``-th one, starting at ``rank``."""
        return list(indices)[self.rank :: self.world_size]

    def device(self, device: torch.device) -> torch.device:
        """Each rank on its own GPU (``cuda:LOCAL_RANK``) when the run is on CUDA."""
        if self.distributed and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.initialized_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def from_environment(device: torch.device) -> Context:
    """The context torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), with the process
    group joined: NCCL when the run is on CUDA, gloo otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    context = Context(rank, world_size, local_rank)
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend=backend, timeout=datetime.timedelta(hours=12))
        context.initialized_here = True
    return context
