"""PSNR and SSIM against scikit-image's reference implementations."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from reddiff_bench.metrics import data_consistency, psnr, ssim


@pytest.mark.parametrize("side", [16, 33, 64])
def test_psnr_ssim_match_scikit_image(side):
    g = torch.Generator().manual_seed(side)
    ref = torch.rand(3, 3, side, side, generator=g) * 2 - 1
    x = (ref + 0.2 * torch.randn(ref.shape, generator=g)).clamp(-1, 1)
    ours_psnr, ours_ssim = psnr(x, ref), ssim(x, ref)
    for i in range(3):
        a, b = ((x[i] + 1) / 2).double().numpy(), ((ref[i] + 1) / 2).double().numpy()
        assert ours_psnr[i].item() == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-4)
        expected = structural_similarity(b, a, data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False)
        assert ours_ssim[i].item() == pytest.approx(expected, abs=1e-5)


def test_ssim_of_identical_images_is_one_and_drops_with_noise():
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim(x + 0.3 * torch.randn_like(x), x).item() < 0.9


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_data_consistency_is_one_for_pure_noise_residual():
    g = torch.Generator().manual_seed(0)
    sigma, m = 0.05, 100_000
    residual = sigma * torch.randn(2, m, generator=g)
    dc = data_consistency(residual.pow(2).sum(-1), sigma, torch.full((2,), float(m)))
    assert torch.allclose(dc, torch.ones(2), atol=0.01)
    assert torch.isnan(data_consistency(residual.pow(2).sum(-1), 0.0, torch.full((2,), float(m)))).all()
