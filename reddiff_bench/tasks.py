"""A task = a degradation (forward model with seeded artifacts) + a noise model.

``sigma_y`` is the standard deviation of the Gaussian measurement noise on the [-1, 1] image
scale: ``y = A(x) + sigma_y * e`` on the entries of ``y`` that carry a measurement, or on every
entry with ``where: everywhere`` (DPS's convention: its inpainting ``y`` is noisy at the missing
pixels too, guided_diffusion/measurements.py ``GaussianNoise`` on ``operator.forward``'s output).
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from .diffusion import randn_per_sample
from .operators import Degradation, Operator

NOISE_PLACES = ("measured", "everywhere")


def check_where(where: str) -> str:
    if where not in NOISE_PLACES:
        raise ValueError(f"task.noise.where must be one of {NOISE_PLACES}, got {where!r}")
    return where


class GaussianNoise:
    """``y = A(x) + sigma_y e``, ``e ~ N(0, I)`` drawn from each image's own generator; ``where``:
    on the measured entries only (``measured``) or on every entry of ``y`` (``everywhere``)."""

    def __init__(self, sigma_y: float = 0.0, where: str = "measured"):
        if sigma_y < 0:
            raise ValueError(f"sigma_y must be >= 0, got {sigma_y}")
        self.sigma_y = float(sigma_y)
        self.where = check_where(where)

    def __call__(self, clean: Tensor, operator: Operator, generators: list[torch.Generator]) -> Tensor:
        if self.sigma_y == 0:
            return clean
        noise = randn_per_sample(generators, tuple(clean.shape[1:]), clean)
        support = operator.y_support(clean) if self.where == "measured" else None
        if support is not None:
            noise = noise * support
        return clean + self.sigma_y * noise


class PoissonNoise:
    """Shot noise: ``(A(x) + 1) / 2`` (clipped at 0) is an intensity in [0, 1] whose counts at
    ``photons`` per unit intensity are Poisson; ``y = 2 counts / photons - 1`` back on the [-1, 1]
    scale. ``sigma_y`` reports the equivalent Gaussian std at mid-grey, ``sqrt(2 / photons)``, for
    solvers that need one. ``where`` as for :class:`GaussianNoise`."""

    def __init__(self, photons: float = 100.0, where: str = "measured"):
        if photons <= 0:
            raise ValueError(f"photons must be > 0, got {photons}")
        self.photons = float(photons)
        self.where = check_where(where)

    @property
    def sigma_y(self) -> float:
        return (2.0 / self.photons) ** 0.5

    def __call__(self, clean: Tensor, operator: Operator, generators: list[torch.Generator]) -> Tensor:
        rate = (self.photons * (clean + 1) / 2).clamp_min(0).double().cpu()
        counts = torch.stack([torch.poisson(rate[k], generator=g) for k, g in enumerate(generators)])
        noisy = (2 * counts / self.photons - 1).to(device=clean.device, dtype=clean.dtype)
        support = operator.y_support(clean) if self.where == "measured" else None
        return noisy if support is None else torch.where(support > 0, noisy, clean)


class Task:
    """What is measured and how: the same ``y`` for every solver of a sweep.

    ``published``: the settings the solvers' authors used for this kind of task (solver name ->
    keyword -> value); the solver configs read them (the ``published`` resolver of ``run.settings``), the task keeps
    them only to say where they came from."""

    def __init__(self, name: str, degradation: Degradation, noise: GaussianNoise | PoissonNoise,
                 published: dict | None = None):
        variant = getattr(degradation, "variant", None)  # e.g. published masks instead of generated ones
        self.name = f"{name}@{variant}" if variant else name  # rows of a variant never pool with the default's
        self.degradation = degradation
        self.noise = noise
        self.published = dict(published or {})

    @property
    def sigma_y(self) -> float:
        return self.noise.sigma_y

    def sample_artifacts(self, image_shape: tuple[int, int, int], generator: torch.Generator,
                         index: int = 0) -> dict[str, Tensor]:
        """One image's artifacts from its generator; ``index`` (its position in the dataset) reaches
        the degradations that pick by it (``indexed``: RED-diff's mask files)."""
        if getattr(self.degradation, "indexed", False):
            return self.degradation.sample_artifacts(tuple(image_shape), generator, index=index)
        return self.degradation.sample_artifacts(tuple(image_shape), generator)

    def operator(self, artifacts: list[dict[str, Tensor]], image_shape: tuple[int, int, int]) -> Operator:
        """The batched operator for the per-image ``artifacts`` (one dict per image)."""
        keys = artifacts[0].keys() if artifacts else ()
        stacked = {k: torch.stack([a[k] for a in artifacts]) for k in keys}
        return self.degradation.operator(stacked, tuple(image_shape))

    def measure(self, operator: Operator, x: Tensor, generators: list[torch.Generator]) -> Tensor:
        with torch.no_grad():
            return self.noise(operator(x), operator, generators)


def tensor_hash(tensors: dict[str, Tensor], length: int = 12) -> str:
    """A short content hash of named tensors (name, dtype, shape and values)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:length]
