"""Top-1 accuracy of torchvision's ResNet-50 (ImageNet weights, IMAGENET1K_V1) on restored images,
as in the RED-Diff evaluation: images in [-1, 1] -> [0, 1], resized (shorter side 256) and centre
cropped to 224, normalised with ImageNet statistics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .weights import MetricUnavailable, describe_missing, download_timeout


class ResNet50Top1(torch.nn.Module):
    def __init__(self, random_weights: bool = False):
        super().__init__()
        from torchvision.models import ResNet50_Weights, resnet50  # heavy, optional: imported when used

        weights = None if random_weights else ResNet50_Weights.IMAGENET1K_V1
        try:
            with download_timeout():
                self.model = resnet50(weights=weights).eval()
        except Exception as err:
            raise MetricUnavailable(describe_missing("ResNet-50 top-1", ResNet50_Weights.IMAGENET1K_V1.url,
                                                     err)) from err
        self.model.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        x = ((x.clamp(-1, 1) + 1) / 2).float()
        h, w = x.shape[-2:]
        scale = 256 / min(h, w)
        x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True,
                          align_corners=False)
        top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
        x = x[..., top : top + 224, left : left + 224]
        return self.model((x - self.mean) / self.std).argmax(-1)
