"""Datasets and the offline photo source."""

from .datasets import ImageFolder, PhotoCrops, load_image

__all__ = ["ImageFolder", "PhotoCrops", "load_image"]
