"""Forward models (operators) and the degradations that build them from seeded artifacts.

A *degradation* is the configured, tensor-free description of a task's forward model (Hydra
instantiates it): ``sample_artifacts(image_shape, generator)`` draws one image's random parts
(mask, kernel; empty when there are none) and ``operator(artifacts, image_shape)`` builds the
batched :class:`Operator` from artifacts stacked over a batch.
"""

from typing import Protocol

import torch
from torch import Tensor

from .base import LinearOperator, Operator, SVDOperator, operator_matrix, support_values
from .blur_network import KernelNetwork, NonlinearBlur, NonlinearBlurOperator
from .color import Colorization, GrayscaleOperator
from .compose import Compose, ComposedOperator
from .convolution import CircularConvolution, GaussianBlur, MotionBlur, ReflectConvolution, UniformBlur
from .dense import DenseOperator, RandomMatrix
from .inpainting import (
    BoxInpainting,
    Denoising,
    DPSBoxInpainting,
    DPSRandomInpainting,
    FreeFormInpainting,
    HalfInpainting,
    MaskFile,
    MaskOperator,
    RandomBoxInpainting,
    RandomPixelInpainting,
)
from .nonlinear import HDR, JPEG, HDROperator, JPEGOperator, PhaseRetrieval, PhaseRetrievalOperator
from .reddiff_blur import ReddiffDeblur, ShippedDeblurOperator
from .separable import BicubicSR, BlockAverageSR, SeparableOperator


class Degradation(Protocol):
    def sample_artifacts(self, image_shape: tuple[int, int, int], generator: torch.Generator) -> dict[str, Tensor]: ...

    def operator(self, artifacts: dict[str, Tensor], image_shape: tuple[int, int, int]) -> Operator: ...


__all__ = [
    "BicubicSR", "BlockAverageSR", "BoxInpainting", "CircularConvolution", "Colorization", "Compose",
    "ComposedOperator", "DPSBoxInpainting", "DPSRandomInpainting", "Degradation", "Denoising", "DenseOperator",
    "FreeFormInpainting", "GaussianBlur", "GrayscaleOperator", "HDR", "HDROperator", "HalfInpainting", "JPEG",
    "JPEGOperator", "KernelNetwork", "LinearOperator", "MaskFile", "MaskOperator", "MotionBlur", "NonlinearBlur",
    "NonlinearBlurOperator", "Operator", "PhaseRetrieval", "PhaseRetrievalOperator", "RandomBoxInpainting",
    "RandomMatrix", "RandomPixelInpainting", "ReddiffDeblur", "ReflectConvolution", "SVDOperator",
    "SeparableOperator", "ShippedDeblurOperator", "UniformBlur", "operator_matrix", "support_values",
]
