"""Metrics computed from the rows' images."""

from .image import data_consistency, psnr, ssim, to_unit

__all__ = ["data_consistency", "psnr", "ssim", "to_unit"]
