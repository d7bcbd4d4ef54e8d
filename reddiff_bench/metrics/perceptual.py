"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, on images in [-1, 1] as it expects
(the RED-diff reference code feeds [0, 1] images, which shifts every number)."""

from __future__ import annotations

import torch
from torch import Tensor

from .weights import MetricUnavailable, describe_missing, download_timeout

_BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}


class LPIPS(torch.nn.Module):
    """``lpips.LPIPS(net)`` (alex default, vgg option) with its calibrated linear layers; per-image
    distances (B,). ``random_backbone`` builds it without pretrained backbone weights (tests)."""

    def __init__(self, net: str = "alex", random_backbone: bool = False):
        super().__init__()
        if net not in _BACKBONE_URLS:
            raise ValueError(f"LPIPS net must be one of {sorted(_BACKBONE_URLS)}, got {net!r}")
        import lpips  # heavy, optional: imported when used

        self.net_name = net
        try:
            with download_timeout():
                self.model = lpips.LPIPS(net=net, pnet_rand=random_backbone, verbose=False).eval()
        except Exception as err:  # a download failure surfaces as URLError, OSError or RuntimeError
            raise MetricUnavailable(describe_missing(f"LPIPS-{net}", _BACKBONE_URLS[net], err)) from err
        self.model.requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        if x.min() < -1.001 or x.max() > 1.001:
            x = x.clamp(-1, 1)
        return self.model(x.float(), ref.float(), normalize=False).reshape(-1)

    def pairwise_mean(self, samples: Tensor) -> float:
        """Mean LPIPS over all pairs of samples (n, C, H, W): a diversity measure."""
        n = samples.shape[0]
        i, j = torch.triu_indices(n, n, offset=1)
        if len(i) == 0:
            return float("nan")
        return float(self(samples[i], samples[j]).mean())
