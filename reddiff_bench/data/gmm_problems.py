"""The problems of the Gaussian-mixture benchmark: ground truths drawn from the prior."""

from __future__ import annotations

from torch import Tensor

from ..checks import check_number
from ..diffusion import make_generator
from ..priors.gmm import grid_gmm_prior
from .datasets import check_split


class GMMProblems:
    """``num_problems`` ground truths ``x* ~ p(x)`` of the grid mixture in dimension ``dim``,
    each drawn from its own generator (problem id ``d{dim}_p{k}``; the ``validation`` split's
    are ``d{dim}_v{k}``, other draws)."""

    def __init__(self, dim: int = 8, num_problems: int = 20, random_weights: bool = False, seed: int = 0,
                 split: str = "test"):
        check_number("dataset.num_problems", num_problems, minimum=1, integer=True)
        check_number("dataset.dim", dim, minimum=1, integer=True)
        self.dim, self.seed = int(dim), seed
        self.split = check_split(split)
        self.name = f"gmm_problems{dim}"
        self.mixture = grid_gmm_prior(dim, random_weights=random_weights, seed=seed).reference[0]
        letter = "p" if split == "test" else "v"
        self.ids = [f"d{dim}_{letter}{k:03d}" for k in range(num_problems)]

    def __len__(self) -> int:
        return len(self.ids)

    def image_id(self, index: int) -> str:
        return self.ids[index]

    def __getitem__(self, index: int) -> tuple[str, Tensor]:
        problem = self.ids[index]
        return problem, self.mixture.sample(1, make_generator(self.seed, "problem", problem))[0].float()
