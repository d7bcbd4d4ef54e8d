"""Cost accounting: wall time and peak memory of a solve, and the timer of bare network calls.

* CUDA: ``torch.cuda.max_memory_allocated`` over the solve (peak tensor memory on the device,
  weights included), after ``reset_peak_memory_stats``; timings are synchronised.
* CPU (Linux): the process's peak resident set size over the solve (``VmHWM`` of
  /proc/self/status, reset through /proc/self/clear_refs before the solve). It includes the
  process's resident baseline (Python, torch, the model). Where the reset is not permitted the
  lifetime peak (``ru_maxrss``) is reported instead, and labelled so.
"""

from __future__ import annotations

import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

_VMHWM = re.compile(r"VmHWM:\s+(\d+)\s+kB")


def _vmhwm_kb() -> int | None:
    try:
        with open("/proc/self/status") as f:
            match = _VMHWM.search(f.read())
        return int(match.group(1)) if match else None
    except OSError:
        return None


def _reset_vmhwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class CostMeasurement:
    seconds: float = float("nan")
    peak_mem_mb: float = float("nan")
    peak_mem_kind: str = "unmeasured"


class CostMeter:
    """``with CostMeter(device) as cost: ...`` then ``cost.result``."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.result = CostMeasurement()
        self._reset_ok = False

    def __enter__(self) -> CostMeter:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._reset_ok = _reset_vmhwm()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.result.seconds = time.perf_counter() - self._start
        if self.device.type == "cuda":
            self.result.peak_mem_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.result.peak_mem_kind = "cuda_max_allocated"
        else:
            kb = _vmhwm_kb() if self._reset_ok else None
            if kb is not None:
                self.result.peak_mem_mb = kb / 1024
                self.result.peak_mem_kind = "cpu_peak_rss"
            else:
                self.result.peak_mem_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                self.result.peak_mem_kind = "cpu_lifetime_maxrss"


def best_of(call: Callable[[], object], device: torch.device, repeats: int,
            warm_up: bool = True) -> tuple[float, float]:
    """The best (seconds, peak MiB) of ``repeats`` metered calls of ``call`` (after one warm-up
    call): the one timer of the bench and of the GPU-hours estimate."""
    if warm_up:
        call()
    best_time, best_mem = float("inf"), float("inf")
    for _ in range(repeats):
        with CostMeter(device) as cost:
            call()
        best_time = min(best_time, cost.result.seconds)
        best_mem = min(best_mem, cost.result.peak_mem_mb)
    return best_time, best_mem


def network_calls(prior, batch: int, steps: int, vjp: bool, device: torch.device, t: int = 500) -> Callable[[], None]:
    """``steps`` bare calls of ``prior``'s network on a batch of ``batch`` noise images at timestep
    ``t``: forward only, or forward and one vector-Jacobian product (the floor of a solver's cost).
    A latent prior's network takes latents (``state_shape``)."""
    x = torch.randn(batch, *prior.state_shape, device=device)

    def call() -> None:
        for _ in range(steps):
            if vjp:
                x_t = x.detach().requires_grad_(True)
                out = prior.predict(x_t, t).x0
                torch.autograd.grad(out, x_t, grad_outputs=torch.ones_like(out))
            else:
                with torch.no_grad():
                    prior.predict(x, t)

    return call
