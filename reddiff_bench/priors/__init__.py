"""Diffusion priors: analytic (exact) and learned."""

from .base import CallCounter, DiffusionPrior, Prediction

__all__ = ["CallCounter", "DiffusionPrior", "Prediction"]
