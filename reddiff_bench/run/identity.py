"""What identifies a run's result, declared once. The run's hash (``config_hash``, recorded in
``run.json`` and in every row) and the name of its directory both come from this module.

A run's identity is the resolved config under :data:`RESULT_KEYS` (the model, task, data, solver
and whatever else reaches a row), less :data:`NOT_RESULT` (what cannot change a row: the other
solvers' published settings, how many images), with every ``_target_`` reduced to its class name
(moving a module changes no identity) and a :data:`SCHEMA` version. RED-Diff's optimizer and
weighting are part of it exactly when the solver uses them (they are interpolated into its node).

A directory name keeps the overrides that can change the identity and drops the others (logging,
profiling, devices, batch size, paths, ...), so that re-running a command with a different batch
size finds its own results, and ``optimizer.lr=0.5`` under DPS names no new directory.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SCHEMA = 2  # 1: the hash held module paths and every solver's published settings of the task

RESULT_KEYS = ("model", "task", "dataset", "solver", "seed", "n_samples", "measurements_from", "metrics",
               "reference_metrics", "sw_projections")
# keys under RESULT_KEYS that change no row: published settings reach a solver through its own node;
# more images extend a run
NOT_RESULT = ("task.published", "dataset.num_images", "dataset.num_problems", "dataset.skip_unreadable")
# keys of the validation split alone: the test split (the default) is the dataset as it was before
# splits existed, so its runs keep their identity
SPLIT_ONLY = ("dataset.split", "dataset.test_images", "dataset.validation_seed")
# keys a run may change between its resumptions (more images extend it)
RESUMABLE = ("dataset.num_images", "dataset.num_problems", "dataset.skip_unreadable")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": value}`` (lists kept as values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def class_name(target: Any) -> Any:
    """``package.module.Class`` -> ``Class`` (a ``_target_`` without its module path)."""
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else target


def identity(resolved: dict[str, Any]) -> dict[str, Any]:
    """The flat identity of the resolved config ``resolved`` (what ``config_hash`` covers)."""
    flat = flatten({key: resolved.get(key) for key in RESULT_KEYS})
    out: dict[str, Any] = {"schema": SCHEMA}
    test_split = flat.get("dataset.split", "test") == "test"
    for key, value in flat.items():
        if _under(key, NOT_RESULT) or (test_split and key in SPLIT_ONLY):
            continue
        out[key] = class_name(value) if key.endswith("._target_") else value
    return out


def migrate(old: dict[str, Any]) -> dict[str, Any]:
    """The identity that a run record of schema 1 (``result_relevant`` of run.json) stands for."""
    out: dict[str, Any] = {"schema": SCHEMA}
    for key, value in old.items():
        if key == "schema" or _under(key, NOT_RESULT):
            continue
        out[key] = class_name(value) if key.endswith("._target_") else value
    return out


def config_hash(ident: dict[str, Any], length: int = 12) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:length]


def override_key(override: str) -> str:
    """``+task.noise.sigma_y=0`` -> ``task.noise.sigma_y``; ``hydra/launcher=gpus`` -> ``hydra.launcher``."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key.split("@", 1)[0].replace("/", ".")


def names_identity(key: str, solver_node: str) -> bool:
    """Whether an override of ``key`` can change a run's identity; ``solver_node``: the solver's
    config before interpolation (as text), which shows what it reads from elsewhere."""
    root = key.split(".", 1)[0]
    if root in RESULT_KEYS:
        if _under(key, ("task.published",)):
            namespace = key.split(".")[2] if key.count(".") >= 2 else None
            return namespace is None or f"${{published:{namespace}." in solver_node
        return not _under(key, RESUMABLE)
    if root == "tuned":  # +tuned=<model>/<task>: tuned settings replace the solver's own
        return True
    if root == "published":  # an experiment's published block: only the solver's own namespace
        namespace = key.split(".")[1] if "." in key else None
        return namespace is None or f"${{published:{namespace}." in solver_node
    return f"${{{root}}}" in solver_node or f"${{{root}." in solver_node  # e.g. RED-Diff's ${optimizer}


def directory_name(overrides: list[str], solver_node: str, default: str = "default") -> str:
    """The folder of a run from its command-line overrides (Hydra's ``hydra.overrides.task``): those
    that can change its identity, sorted, as ``key=value`` joined by commas; ``default`` when none;
    ``/`` replaced; names longer than 120 characters shortened with a hash of the whole."""
    kept = sorted(o for o in overrides if names_identity(override_key(o), solver_node))
    name = ",".join(kept).replace("/", "_").replace("\\", "_") or default
    if len(name) > 120:  # the solver and the task first, so that a shortened name still says them
        first = [o for o in kept if override_key(o) in ("solver", "task")]
        shown = ",".join(first + [o for o in kept if o not in first]).replace("/", "_").replace("\\", "_")
        name = f"{shown[:100]}...{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return name


def solver_text(solver: Any) -> str:
    """The solver's node before interpolation, as text (what :func:`names_identity` reads)."""
    return json.dumps(solver, default=str)
