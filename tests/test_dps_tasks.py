"""The DPS task set (conf/task/dps_*.yaml) against the official DPS code.

Fixtures: tests/fixtures/dps/dps_reference.npz, recorded by tests/fixtures/dps/record.py from
DPS2022/diffusion-posterior-sampling (effbde7) and LeviBorodenko/motionblur. Forward outputs are
compared on DPS's own artifacts (kernel, mask); the project's seeded draws are compared with DPS's
draws twice: replayed from the same numpy stream they are identical, and drawn from the project's
per-image generators they follow the same distribution (two-sample tests; each test also shows
that the same criterion rejects the generator the project used before)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from scipy import stats

from reddiff_bench.diffusion import make_generator
from reddiff_bench.operators import (
    BoxInpainting,
    DPSBoxInpainting,
    DPSRandomInpainting,
    MaskOperator,
    MotionBlur,
    RandomBoxInpainting,
    RandomPixelInpainting,
)
from reddiff_bench.operators.kernels import dps_motion_kernel, gaussian_kernel, kernel_statistics
from reddiff_bench.solvers import DPS

from .helpers import compose_config, compose_task, relative_error

REFERENCE = np.load(Path(__file__).parent / "fixtures" / "dps" / "dps_reference.npz")
X = torch.from_numpy(REFERENCE["x"])[None]  # (1, 3, 64, 64)
SHAPE = (3, 256, 256)


task, relative = compose_task, relative_error


def forward(task_, artifacts, x=X):
    with torch.no_grad():
        return task_.operator([artifacts], tuple(x.shape[1:]))(x)[0].numpy()


def test_gaussian_blur_is_dps_kernel_mirrored_border_and_correlation():
    gauss = task("dps_deblur_gauss")
    artifacts = gauss.sample_artifacts(tuple(X.shape[1:]), torch.Generator())
    np.testing.assert_allclose(artifacts["kernel"][0].double().numpy(), REFERENCE["gauss_kernel"], atol=1e-9)
    np.testing.assert_allclose(gaussian_kernel(61, 3.0, 4.0).numpy(), REFERENCE["gauss_kernel"], rtol=0, atol=1e-15)
    assert relative(forward(gauss, artifacts), REFERENCE["gauss_y"]) < 1e-5
    # the unadorned task: the same kernel on a torus, equal in the interior only
    circular = forward(task("deblur_gauss"), task("deblur_gauss").sample_artifacts(tuple(X.shape[1:]), None))
    inner = (slice(None), slice(13, -13), slice(13, -13))
    assert relative(circular[inner], REFERENCE["gauss_y"][inner]) < 1e-5
    assert relative(circular, REFERENCE["gauss_y"]) > 1e-2


def test_motion_blur_on_dps_kernel_is_dps_output_and_correlation_not_convolution():
    kernel = torch.from_numpy(REFERENCE["motion_op_kernel"])[None]
    motion = task("dps_deblur_motion")
    assert relative(forward(motion, {"kernel": kernel}), REFERENCE["motion_y"]) < 1e-5
    turned = task("dps_deblur_motion", "task.degradation.orientation=convolution")
    assert relative(forward(turned, {"kernel": kernel}), REFERENCE["motion_y"]) > 0.1
    # boundary=circular keeps the orientation: on the image mirrored by 31 px (126 x 126), the torus
    # wraps only the outer 30 px, so the centre 64 x 64 is DPS's output
    circular = task("dps_deblur_motion", "task.degradation.boundary=circular")
    mirrored = torch.nn.functional.pad(X, (31, 31, 31, 31), mode="reflect")
    assert relative(forward(circular, {"kernel": kernel}, mirrored)[:, 31:-31, 31:-31], REFERENCE["motion_y"]) < 1e-5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_motion_kernels_replay_the_motionblur_package_draw_for_draw(seed):
    kernel = dps_motion_kernel(61, 0.5, np.random.RandomState(seed))
    np.testing.assert_array_equal(kernel.numpy(), REFERENCE[f"motion_kernel_s{seed}"])


def test_motion_kernel_of_dps_operator_is_its_second_draw():
    rng = np.random.RandomState(0)  # MotionBlurOperator draws a kernel in Blurkernel, then the one it keeps
    dps_motion_kernel(61, 0.5, rng)
    np.testing.assert_array_equal(dps_motion_kernel(61, 0.5, rng).numpy(), REFERENCE["motion_op_kernel"])


def kernel_stats(degradation: MotionBlur, n: int) -> np.ndarray:
    draws = (degradation.sample_artifacts(SHAPE, make_generator(0, "artifacts", "motion", str(i))) for i in range(n))
    return np.asarray([kernel_statistics(artifacts["kernel"][0]) for artifacts in draws])


def same_distribution(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Two-sample Kolmogorov-Smirnov at level 1e-3 on each statistic (columns)."""
    ours, theirs = ours.reshape(len(ours), -1), theirs.reshape(len(theirs), -1)
    return all(stats.ks_2samp(ours[:, j], theirs[:, j]).pvalue > 1e-3 for j in range(ours.shape[1]))


@pytest.mark.slow
def test_motion_kernels_follow_dps_distribution_and_the_old_generator_does_not():
    """Seeded per image (DPS draws one unseeded kernel per run): RMS radius, support and peak
    distributed as 500 kernels of the package (median radius 10.5 px); the project's earlier random
    walk (about 2 px) fails the same test."""
    ours = kernel_stats(MotionBlur(61, 0.5, kernel="dps"), 300)
    assert same_distribution(ours, REFERENCE["motion_stats"])
    assert np.median(ours[:, 0]) == pytest.approx(np.median(REFERENCE["motion_stats"][:, 0]), rel=0.15)
    old = kernel_stats(MotionBlur(61, 0.5, kernel="random_walk"), 40)
    assert not same_distribution(old, REFERENCE["motion_stats"])


def box_corner(mask: torch.Tensor) -> tuple[int, int]:
    rows, cols = torch.nonzero(mask[0] == 0, as_tuple=True)
    return int(rows.min()), int(cols.min())


def test_box_masks_replay_dps_draw_for_draw():
    box = DPSBoxInpainting()
    for seed in range(0, 500, 7):
        mask = box.draw(SHAPE, np.random.RandomState(seed))["mask"]
        assert int((mask == 0).sum()) == 128 * 128
        assert box_corner(mask) == (REFERENCE["box_top"][seed], REFERENCE["box_left"][seed])


def box_corners(degradation, n: int = 300) -> np.ndarray:
    return np.asarray([box_corner(degradation.sample_artifacts(SHAPE, make_generator(0, "artifacts", "box",
                                                                                     str(i)))["mask"])
                       for i in range(n)])


def test_box_masks_follow_dps_placement_and_the_old_ones_do_not():
    theirs = np.stack([REFERENCE["box_top"], REFERENCE["box_left"]], 1)
    ours = box_corners(task("dps_inpaint_box").degradation)
    assert ours.min() == 16 and ours.max() == 111  # DPS: randint(16, 112)
    assert same_distribution(ours, theirs)
    for old in (BoxInpainting(0.5), RandomBoxInpainting(0.5)):  # centred; anywhere (no margin)
        assert not same_distribution(box_corners(old), theirs)


def test_random_masks_replay_dps_draw_for_draw():
    mask = DPSRandomInpainting().draw(SHAPE, np.random.RandomState(0))["mask"]
    np.testing.assert_array_equal(np.packbits(mask[0].numpy() > 0), REFERENCE["random_mask_s0"])
    for seed in range(0, 500, 7):
        mask = DPSRandomInpainting().draw(SHAPE, np.random.RandomState(seed))["mask"]
        assert int((mask == 0).sum()) == REFERENCE["random_missing"][seed]


def missing_fractions(degradation, n: int = 300) -> np.ndarray:
    return np.asarray([float((degradation.sample_artifacts(SHAPE, make_generator(0, "artifacts", "random",
                                                                                 str(i)))["mask"] == 0).float().mean())
                       for i in range(n)])


def test_random_masks_follow_dps_fractions_and_the_old_ones_do_not():
    theirs = REFERENCE["random_missing"] / (256 * 256)
    ours = missing_fractions(task("dps_inpaint_random").degradation)
    assert ours.min() >= 0.3 and ours.max() < 0.7
    assert same_distribution(ours, theirs)
    assert not same_distribution(missing_fractions(RandomPixelInpainting(0.7), 100), theirs)


def test_phase_retrieval_is_dps_padding_scale_and_centred_fft():
    x = X[..., :32, :32]
    phase = task("dps_phase_retrieval")
    out = forward(phase, {}, x)
    assert out.shape == (3, 160, 160)  # 64 px per side whatever the image size
    assert relative(out[0], REFERENCE["phase_y0"]) < 1e-5
    assert relative(forward(phase, {}, -x)[0], REFERENCE["phase_y0"]) < 1e-5  # the sign of x is lost
    assert forward(task("phase_retrieval"), {}, x).shape == (3, 64, 64)  # the project's: twice the side


def test_dps_tasks_add_noise_to_missing_pixels_and_the_others_do_not():
    x = torch.zeros(1, *SHAPE[:1], 64, 64)
    for name, noisy_holes in (("dps_inpaint_box", True), ("inpaint_box", False)):
        t = task(name)
        op = t.operator([t.sample_artifacts((3, 64, 64), make_generator(0, "artifacts", name, "a"))], (3, 64, 64))
        y = t.measure(op, x, [torch.Generator().manual_seed(0)])
        holes = op.mask.expand_as(y) == 0
        assert bool((y[holes] != 0).any()) == noisy_holes
        assert float(y[~holes].std()) == pytest.approx(0.05, rel=0.05)


def test_dps_takes_the_whole_residual_on_dps_tasks(photo_prior, photo_batch):
    """The norm over every entry of y (the official code's) differs from the measured entries'
    exactly by the noise at the missing pixels; DPS's published step sizes come with it."""
    assert compose_config(["task=dps_inpaint_box", "solver=dps"]).solver.residual == "whole"
    assert compose_config(["task=inpaint_box", "solver=dps"]).solver.residual == "measured"
    _, x = photo_batch
    mask = torch.ones(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 0
    op = MaskOperator(mask)
    y = op(x[:1]) + 0.05 * torch.randn(x[:1].shape, generator=torch.Generator().manual_seed(0))  # noise everywhere
    norms = {}
    for residual in ("measured", "whole"):
        seen: list[float] = []

        def first_norm(step, info, seen=seen):
            seen.append(float(info["residual_norm"][0]))

        DPS(steps=2, residual=residual).solve(photo_prior, op, y, sigma_y=0.05,
                                              generators=[torch.Generator().manual_seed(1)], callback=first_norm)
        norms[residual] = seen[0]
    off = float((y * (1 - mask)).pow(2).sum())
    assert norms["whole"] ** 2 - norms["measured"] ** 2 == pytest.approx(off, rel=1e-4)


@pytest.mark.parametrize("solver", ["ddrm", "pgdm", "ddnm", "mcgdiff"])
def test_svd_solvers_refuse_the_reflect_boundary_naming_the_fix(solver):
    blur = task("dps_deblur_gauss")
    op = blur.operator([blur.sample_artifacts((3, 64, 64), None)], (3, 64, 64))
    with pytest.raises(ValueError, match="task.degradation.boundary=circular"):
        instantiate(compose_config([f"solver={solver}", "task=dps_deblur_gauss"]).solver).check(op)
    circular = task("dps_deblur_gauss", "task.degradation.boundary=circular")
    instantiate(compose_config([f"solver={solver}"]).solver).check(
        circular.operator([circular.sample_artifacts((3, 64, 64), None)], (3, 64, 64)))


def test_a_kernel_too_large_to_mirror_is_refused_naming_the_fixes():
    from reddiff_bench.errors import ConfigError

    blur = task("dps_deblur_gauss")
    with pytest.raises(ConfigError, match="dataset.size.*boundary=circular"):
        blur.operator([blur.sample_artifacts((3, 16, 16), None)], (3, 16, 16))


def test_bicubic_super_resolution_is_dps_resizer_and_block_averaging_is_not():
    """sr_bicubic4 is DPS's super_resolution operator; sr4 is RED-diff's and DDRM's block averaging."""
    ours = forward(task("sr_bicubic4"), {})
    assert ours.shape == (3, 16, 16)
    assert relative(ours, REFERENCE["sr4_y"]) < 1e-5
    assert relative(forward(task("sr4"), {}), REFERENCE["sr4_y"]) > 1e-3
