"""Datasets and the offline photo source."""

from .datasets import ImageFolder, PhotoCrops, load_image
from .gmm_problems import GMMProblems

__all__ = ["GMMProblems", "ImageFolder", "PhotoCrops", "load_image"]
