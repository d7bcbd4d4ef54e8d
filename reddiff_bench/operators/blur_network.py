"""Nonlinear blur by a learned kernel network: the "generate blur" network of bkse (Tran et al.,
CVPR 2021, "Explore image deblurring via encoded blur kernel space",
VinAIResearch/blur-kernel-space-exploring), which DPS's and RED-diff's ``nonlinear_blur`` /
``deblur_nl`` apply: ``y = clip(2 G((x + 1) / 2, k) - 1, -1, 1)`` with a kernel code ``k``.

:class:`KernelNetwork` is the part of bkse's ``KernelWizard`` that ``adaptKernel`` runs (feature
extractor, kernel adapter U-Net with the code concatenated at its innermost level, reconstruction
trunk), written here with the same module layout so that GOPRO_wVAE.pth's weights load by name.

What the reference codes compute instead: DPS loads the weights with
``load_state_dict(torch.load(path))``; RED-diff (utils/degredations.py
``NonlinearBlurOperator``, a hard-coded path) loads ``{'state_dict': weights}`` with
``strict=False``, which matches none of the network's tensors: its network keeps its random
initialisation. Both draw a new code ``randn(B, 512, 2, 2) * 1.2`` at every call, so the
measurement and every data-term evaluation use different kernels. Here the code is an artifact
drawn once per image from its generator, saved and hashed with the measurement, and the weights
must load completely.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Operator

WEIGHTS_NAME = "GOPRO_wVAE.pth"
WEIGHTS_SOURCE = ("https://github.com/VinAIResearch/blur-kernel-space-exploring (experiments/pretrained/"
                  "GOPRO_wVAE.pth, linked from its README)")


class _Residual(nn.Module):
    """conv - ReLU - conv, plus the input (bkse's ResidualBlock_noBN)."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf, nf, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class _Level(nn.Module):
    """One level of the adapter U-Net (no normalisation: bkse's ``norm: none``); the innermost
    level concatenates the kernel code to its bottleneck."""

    def __init__(self, outer: int, inner: int, below: _Level | None = None, input_nc: int | None = None,
                 outermost: bool = False):
        super().__init__()
        self.outermost, self.innermost = outermost, below is None
        down = nn.Conv2d(input_nc or outer, inner, 4, 2, 1, bias=False)
        up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=outermost)
        if outermost:
            self.down = nn.Sequential(down)
            self.up = nn.Sequential(nn.ReLU(), up, nn.Tanh())
        else:
            self.down = nn.Sequential(nn.LeakyReLU(0.2), down, *([] if self.innermost else [nn.Identity()]))
            self.up = nn.Sequential(nn.ReLU(), up, nn.Identity())
        if below is not None:
            self.submodule = below

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        inner = self.down(x)
        inner = torch.cat((inner, code), 1) if self.innermost else self.submodule(inner, code)
        out = self.up(inner)
        return out if self.outermost else torch.cat((out, x), 1)


class _Adapter(nn.Module):
    def __init__(self, nf: int):
        super().__init__()
        level = _Level(nf * 8, nf * 8)
        for outer, inner in ((nf * 4, nf * 8), (nf * 2, nf * 4), (nf, nf * 2)):
            level = _Level(outer, inner, level)
        self.model = _Level(nf, nf, level, input_nc=nf, outermost=True)


class KernelNetwork(nn.Module):
    """bkse's ``KernelWizard.adaptKernel``: ``G(x, code)`` for ``x`` in [0, 1], (B, 3, H, W) with
    H and W multiples of 128; the code is (B, 8 nf, H / 128, W / 128)."""

    def __init__(self, nf: int = 64, front_blocks: int = 10, back_blocks: int = 20, channels: int = 3):
        super().__init__()
        self.nf = nf
        act = nn.LeakyReLU(0.1)
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(channels, nf, 3, 1, 1), act, nn.Conv2d(nf, nf, 3, 2, 1), act, nn.Conv2d(nf, nf, 3, 2, 1), act,
            *[_Residual(nf) for _ in range(front_blocks)])
        self.adapter = _Adapter(nf)
        self.recon_trunk = nn.Sequential(
            *[_Residual(nf) for _ in range(back_blocks)],
            nn.Conv2d(nf, nf * 4, 3, 1, 1), nn.PixelShuffle(2), act, nn.Conv2d(nf, 64 * 4, 3, 1, 1), nn.PixelShuffle(2),
            act, nn.Conv2d(64, 64, 3, 1, 1), act, nn.Conv2d(64, channels, 3, 1, 1))

    def code_shape(self, h: int, w: int) -> tuple[int, int, int]:
        if h % 128 or w % 128:
            raise ConfigError(f"the bkse kernel network takes images whose sides are multiples of 128, got {h} x {w}")
        return (8 * self.nf, h // 128, w // 128)

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        return self.recon_trunk(self.adapter.model(self.feature_extractor(x), code)) + x


def load_kernel_network(path: Path, nf: int = 64, front_blocks: int = 10, back_blocks: int = 20) -> KernelNetwork:
    """The network with bkse's weights from ``path`` (a state dict, or one under ``state_dict`` or
    ``params``); refused by name when the file is absent or lacks any of the network's tensors."""
    if not path.is_file():
        raise ConfigError(f"the bkse kernel network's weights {path.name} are not at {path}: download them from "
                          f"{WEIGHTS_SOURCE} and place them there, or set task.degradation.weights")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "params"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    network = KernelNetwork(nf, front_blocks, back_blocks)
    wanted = network.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ConfigError(f"{path} is not bkse's kernel network of this shape: {len(missing)} of {len(wanted)} tensors "
                          f"are missing (first: {missing[:3]})")
    network.load_state_dict({k: state[k] for k in wanted})
    return network.eval().requires_grad_(False)


class NonlinearBlurOperator(Operator):
    """``y = clip(2 G((x + 1) / 2, code) - 1, -1, 1)``; initial estimate ``y``."""

    def __init__(self, network: KernelNetwork, code: Tensor):
        super().__init__()
        self.network = network
        self.register_buffer("code", code)

    def forward(self, x: Tensor) -> Tensor:
        code = self.code.to(x.dtype).expand(x.shape[0], *self.code.shape[1:])
        return (2 * self.network.to(x.dtype)((x + 1) / 2, code) - 1).clamp(-1, 1)

    def init_estimate(self, y: Tensor) -> Tensor:
        return y.clone()


class NonlinearBlur:
    """The nonlinear blur task: a kernel code ``randn(8 nf, H / 128, W / 128) * code_scale`` per image
    (DPS's and RED-diff's draw) and bkse's network with the weights at ``weights``."""

    def __init__(self, weights: str, nf: int = 64, front_blocks: int = 10, back_blocks: int = 20,
                 code_scale: float = 1.2):
        self.weights, self.code_scale = Path(weights).expanduser(), float(code_scale)
        self.shape = (int(nf), int(front_blocks), int(back_blocks))
        self._network: KernelNetwork | None = None

    def network(self) -> KernelNetwork:
        if self._network is None:
            self._network = load_kernel_network(self.weights, *self.shape)
        return self._network

    def sample_artifacts(self, image_shape, generator) -> dict[str, Tensor]:
        shape = self.network().code_shape(*image_shape[1:])
        return {"code": torch.randn(shape, generator=generator) * self.code_scale}

    def operator(self, artifacts, image_shape) -> NonlinearBlurOperator:
        return NonlinearBlurOperator(self.network(), artifacts["code"])
