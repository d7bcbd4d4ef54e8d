"""Shared caches (GMM fits, FID reference features, converted checkpoints, downloaded weights):
built once, published atomically, safe when many jobs start together.

``publish(path, build)``: if ``path`` exists it is used as is; otherwise, under a file lock
beside it (``<path>.lock``, the ``filelock`` package), the first process builds it into a
temporary name in the same folder and renames it into place; processes that waited on the lock
find it built. A reader never sees a half-written file, and N jobs never build it N times.
Locks are advisory kernel locks: a killed builder releases its lock, and its temporary file is
never mistaken for the result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

from .errors import ConfigError

T = TypeVar("T")


def ensure_writable_dir(folder: str | Path, what: str, key: str) -> Path:
    """Create ``folder`` if needed and check that files can be written there; a ConfigError naming
    the folder and the setting to change otherwise (before any work is done)."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"{what} {folder} is not writable ({err.strerror or err}). Make it writable, or point "
                          f"{key} at a writable folder.") from err
    return folder


@contextmanager
def lock(path: str | Path, timeout: float = -1) -> Iterator[None]:
    """Hold the file lock ``<path>.lock`` (create its folder if needed)."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=timeout):
        yield


def temporary_sibling(path: Path, directory: bool = False) -> Path:
    """A fresh, uniquely named temporary file (or folder) in ``path``'s folder."""
    prefix = f".{path.name}.tmp-"
    if directory:
        return Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix))
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    os.close(handle)
    return Path(name)


def publish(path: str | Path, build: Callable[[Path], None], directory: bool = False) -> Path:
    """Return ``path``, building it first (``build(tmp)`` writes into a temporary sibling that is
    then renamed to ``path``) unless it exists; one builder at a time across processes."""
    path = Path(path)
    if path.exists():
        return path
    with lock(path):
        if path.exists():  # built by the process we waited for
            return path
        tmp = temporary_sibling(path, directory)
        try:
            build(tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return path


def read_or_explain(path: Path, read: Callable[[Path], T], what: str, fix: str | None = None) -> T:
    """``read(path)``, or a ConfigError naming the file and the fix when it is corrupt (``fix``:
    what to do about it; by default, for caches: delete it, it is rebuilt)."""
    try:
        return read(path)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file fails in many ways (pickle, zip, keys)
        # only the kind of error: a loader's own hint (torch's: retry with weights_only=False, i.e. run
        # whatever code the file holds) is not advice to repeat about a file nobody vouches for
        fix = fix or "Delete it and run again: it is rebuilt (or set paths.cache_dir to another folder)."
        raise ConfigError(f"the {what} {path} cannot be read (truncated, or not written by this version: "
                          f"{type(err).__name__}). {fix}") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (unique temporary name, fsync, rename)."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
