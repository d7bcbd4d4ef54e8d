"""Pretrained weights of metric networks come from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``), downloaded there
on first use when the network allows. When they are absent and cannot be downloaded, the metric
is unavailable: it reports NaN and a reason naming the file, its URL and the folder to put it in.
"""

from __future__ import annotations

import socket
from pathlib import Path

import torch

from ..files import lock


class MetricUnavailable(RuntimeError):
    """A metric that cannot be computed here; its message says why and how to fix it."""


def hub_checkpoint_dir() -> Path:

    return Path(torch.hub.get_dir()) / "checkpoints"


HUB_FOLDER = "$TORCH_HOME/hub/checkpoints"  # how notes name the hub cache: true on any machine


def describe_missing(what: str, url: str, err: BaseException) -> str:
    """The note of a metric whose weights are missing: the file, where it goes and where to get it,
    in words that hold on any machine (notes end up in committed tables); the log adds this
    machine's folder and the download error (:func:`log_missing`)."""
    name = url.rsplit("/", 1)[-1]
    return (f"{what} unavailable: its weights {name} are not in the torch hub cache ({HUB_FOLDER}) and could not "
            f"be downloaded ({type(err).__name__}). Download {url} and place it in {HUB_FOLDER}.")


def log_missing(err: BaseException) -> str:
    """What the log adds to a note of missing weights: this machine's folder and the error."""
    return f" Here {HUB_FOLDER} is {hub_checkpoint_dir()}; the download failed with: {err}"


class download_timeout:
    """Bound how long a weight download may hang on a closed network, and hold the hub cache's
    lock meanwhile: jobs that start together download a file once (torch.hub writes it under a
    temporary name and renames it when complete)."""

    def __init__(self, seconds: float = 20.0):
        self.seconds = seconds

    def __enter__(self):

        self.previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(self.seconds)
        self.lock = lock(hub_checkpoint_dir() / "reddiff_bench_download")
        self.lock.__enter__()

    def __exit__(self, *exc):
        self.lock.__exit__(*exc)
        socket.setdefaulttimeout(self.previous)
