"""Metrics computed from the rows' images; ``registry`` names every metric a row or run reports."""

from .image import data_consistency, fidelity, psnr, ssim, to_unit

__all__ = ["data_consistency", "fidelity", "psnr", "ssim", "to_unit"]
