"""Datasets and the offline photo source. ``gmm_problems`` (random problems drawn from the
Gaussian-mixture prior) builds on ``priors``, which builds on ``photos``: import it by its module
(``reddiff_bench.data.gmm_problems``), so that this package stays below the priors."""

from .datasets import ImageFolder, PhotoCrops, load_image

__all__ = ["ImageFolder", "PhotoCrops", "load_image"]
