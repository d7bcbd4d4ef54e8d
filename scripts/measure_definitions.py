"""Prints the figures behind docs/findings.md "Measurement definitions": how the unadorned tasks,
DPS's (dps_*) and RED-diff's (reddiff_*) measurements differ, on a 256 x 256 photo (scikit-image's
astronaut) and on seeded draws. CPU, about a minute.

    python scripts/measure_definitions.py
"""

from __future__ import annotations

import numpy as np
import torch
from hydra.utils import instantiate
from skimage import data
from skimage.transform import resize

from reddiff_bench.diffusion import make_generator
from reddiff_bench.operators import MotionBlur, ReddiffDeblur, SeparableOperator
from reddiff_bench.operators.kernels import kernel_statistics
from reddiff_bench.operators.reddiff_blur import ZERO, blur_matrix, reddiff_kernel
from reddiff_bench.run.settings import compose

SHAPE = (3, 256, 256)


def photo() -> torch.Tensor:
    image = resize(data.astronaut(), SHAPE[1:], anti_aliasing=True)
    return torch.from_numpy(image).permute(2, 0, 1)[None].double() * 2 - 1


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def task(name: str):
    return instantiate(compose([f"task={name}"]).task, _convert_="all")


def motion_kernels() -> None:
    print("motion kernels, 61 x 61, intensity 0.5 (200 seeded draws each): median RMS radius, support, peak")
    for kernel in ("dps", "random_walk"):
        blur = MotionBlur(61, 0.5, kernel=kernel)
        stats = np.asarray([kernel_statistics(blur.sample_artifacts(SHAPE, make_generator(0, "m", str(i)))["kernel"][0])
                            for i in range(200)])
        print(f"  {kernel:12s} {np.median(stats[:, 0]):5.2f} px  {np.median(stats[:, 1]):5.0f} px  "
              f"{np.median(stats[:, 2]):.4f}")


def dps_blurs(x: torch.Tensor) -> None:
    print("DPS's blurs against the unadorned tasks (same kernel): whole image / 30 px from the border")
    for ours, theirs in (("deblur_gauss", "dps_deblur_gauss"), ("deblur_motion", "dps_deblur_motion")):
        a, b = task(ours), task(theirs)
        generator = make_generator(0, "artifacts", "x")
        artifacts = a.sample_artifacts(SHAPE, generator)
        if ours == "deblur_motion":  # the same kernel, turned: DPS correlates, the unadorned task convolves
            artifacts_b = {"kernel": artifacts["kernel"].flip(-2, -1)}
        else:
            artifacts_b = artifacts
        with torch.no_grad():
            ya = a.operator([artifacts], SHAPE).double()(x)
            yb = b.operator([artifacts_b], SHAPE).double()(x)
        inner = (..., slice(30, -30), slice(30, -30))
        print(f"  {ours:14s} {relative(ya, yb):.2e} / {relative(ya[inner], yb[inner]):.2e}")


def dps_steps() -> None:
    print("DPS's step at the true image, whole residual / measured entries (sqrt of the measured share)")
    for name in ("dps_inpaint_box", "dps_inpaint_random"):
        t = task(name)
        shares = [float(t.sample_artifacts(SHAPE, make_generator(0, "artifacts", str(i)))["mask"].mean())
                  for i in range(50)]
        print(f"  {name:20s} {np.mean(np.sqrt(shares)):.3f} (mean over 50 masks; missing share "
              f"{1 - np.mean(shares):.3f})")


def reddiff_deblurs(x: torch.Tensor) -> None:
    print("RED-diff's deblurs: each defect alone (relative change of A(x)), gain per axis, colour from grey")
    grey = x.mean(1, keepdim=True).expand_as(x)
    for kernel in ("uniform", "gaussian"):
        taps = reddiff_kernel(kernel)
        shipped = ReddiffDeblur(kernel, True).operator({}, SHAPE).double()
        short = blur_matrix(taps, 256, True).float()
        u, s, v = torch.svd(short, some=False)
        thresholded = ((u * torch.where(s < ZERO, 0, s)) @ v.T).double()
        ordered = SeparableOperator(thresholded, thresholded)
        exact_short = SeparableOperator(blur_matrix(taps.double(), 256, True), blur_matrix(taps.double(), 256, True))
        intended = ReddiffDeblur(kernel, False).operator({}, SHAPE)
        with torch.no_grad():
            figures = (relative(shipped(x), ordered(x)), relative(ordered(x), exact_short(x)),
                       relative(exact_short(x), intended(x)), relative(shipped(x), intended(x)))
            coloured = shipped(grey)
            part = relative(coloured[:, 0], coloured[:, 1])
        gain = float(blur_matrix(taps, 64, True)[32].sum())
        print(f"  {kernel:8s} ordering {figures[0]:.3f}  threshold {figures[1]:.4f}  dropped tap {figures[2]:.3f}  "
              f"all {figures[3]:.3f}  gain {gain:.3f}  grey -> channels differ by {part:.1e}")


def main() -> None:
    torch.set_grad_enabled(False)
    x = photo()
    motion_kernels()
    dps_blurs(x)
    dps_steps()
    reddiff_deblurs(x)


if __name__ == "__main__":
    main()
