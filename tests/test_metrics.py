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


# --- LPIPS, FID, KID, top-1, unavailable weights -------------------------------------------------

import math  # noqa: E402
import urllib.error  # noqa: E402

from reddiff_bench.metrics.fid import frechet_distance, gaussian_stats, kernel_inception_distance  # noqa: E402
from reddiff_bench.metrics.suite import MetricSuite  # noqa: E402


def test_lpips_wrapper_equals_the_lpips_package_on_minus_one_to_one_inputs():
    import lpips

    from reddiff_bench.metrics.perceptual import LPIPS

    ours = LPIPS("alex", random_backbone=True)
    direct = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    direct.load_state_dict(ours.model.state_dict())
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1, torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        expected = direct(a, b).reshape(-1)
        wrong_range = direct((a + 1) / 2, (b + 1) / 2).reshape(-1)  # what the RED-diff reference feeds
    assert torch.allclose(ours(a, b), expected, atol=1e-6)
    assert not torch.allclose(ours(a, b), wrong_range, atol=1e-3)
    assert ours(a, a).abs().max() < 1e-6


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 6))
    mu, sigma = gaussian_stats(f)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    a, b = rng.uniform(0.5, 2, size=4), rng.uniform(0.5, 2, size=4)
    expected = ((m1 - m2) ** 2).sum() + (a + b - 2 * np.sqrt(a * b)).sum()
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-8)


def test_kid_is_about_zero_for_one_distribution_and_positive_for_a_shifted_one():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, same_std = kernel_inception_distance(x, y, subsets=20, subset_size=200)
    shifted, _ = kernel_inception_distance(x, y + 0.5, subsets=20, subset_size=200)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 10 * max(abs(same), same_std)


def test_data_consistency_of_the_ground_truth_is_about_one(photo_batch):
    from reddiff_bench.diffusion import make_generator
    from reddiff_bench.operators import RandomPixelInpainting
    from reddiff_bench.tasks import GaussianNoise, Task

    ids, x = photo_batch
    task = Task("inpaint_random", RandomPixelInpainting(0.5), GaussianNoise(0.05))
    artifacts = [task.sample_artifacts(tuple(x.shape[1:]), make_generator(0, "a", i)) for i in ids]
    op = task.operator(artifacts, tuple(x.shape[1:]))
    y = task.measure(op, x, [make_generator(0, "n", i) for i in ids])
    residual = (y - op(x)) * op.y_support(y)
    dc = data_consistency(residual.reshape(len(ids), -1).pow(2).sum(-1), 0.05, op.num_measurements(y))
    assert torch.allclose(dc, torch.ones_like(dc), atol=0.15), dc  # ~384 measurements: 4% std per image
    assert abs(float(dc.mean()) - 1) < 0.08


def test_missing_weights_give_nan_with_a_reason_naming_the_file(monkeypatch):
    import lpips
    import pytorch_fid.inception

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(lpips, "LPIPS", offline)
    monkeypatch.setattr(pytorch_fid.inception, "InceptionV3", offline)
    suite = MetricSuite(lpips="alex", fid=True, top1=False)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    for image_id in ("a", "b"):
        row = suite.image_metrics(image_id, x, x)
        assert math.isnan(row["lpips"])
    summary = suite.finalize([(i, lambda: x, lambda: x) for i in ("a", "b")])
    assert "alexnet-owt-7be5be79.pth" in summary["notes"]["lpips"] and "checkpoints" in summary["notes"]["lpips"]
    assert "pt_inception-2015-12-05" in summary["notes"]["fid"]
    assert "fid" not in summary  # no made-up number


def test_suite_fid_and_top1_with_random_networks(monkeypatch):
    from reddiff_bench.metrics import fid as fid_module

    class FakeInception(torch.nn.Module):  # a fixed random projection stands in for Inception
        def __init__(self):
            super().__init__()
            self.proj = torch.randn(3 * 32 * 32, 8, generator=torch.Generator().manual_seed(0))

        def forward(self, x):
            return x.reshape(x.shape[0], -1) @ self.proj

    monkeypatch.setattr("reddiff_bench.metrics.suite.InceptionFeatures", FakeInception)
    suite = MetricSuite(lpips="alex", fid=True, top1=True, labels={"i0": 3, "i1": 5}, random_backbones=True,
                        kid_subsets=5, kid_subset_size=4)
    g = torch.Generator().manual_seed(1)
    images = []
    for k in range(6):
        x = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
        row = suite.image_metrics(f"i{k}", x, x)
        assert row["lpips"] == pytest.approx(0.0, abs=1e-6)
        assert ("top1_correct" in row) == (k < 2)
        images.append((f"i{k}", lambda x=x: x, lambda x=x: x))
    summary = suite.finalize(images)
    assert summary["fid"] == pytest.approx(0.0, abs=1e-3) and summary["fid_num_images"] == 6  # rank-deficient sqrtm
    assert "fid_warning" in summary
    assert summary["fid_features"] == fid_module.FEATURE_EXTRACTOR


def test_sliced_wasserstein_identities():
    from reddiff_bench.metrics.distribution import sliced_wasserstein

    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g, dtype=torch.float64)
    # the same set in another order is at distance 0
    assert sliced_wasserstein(x, x[torch.randperm(500, generator=g)], 200, g) < 1e-12
    # in 1-D every direction is +-1 and SW is W2 of the sorted samples
    a, b = torch.randn(400, 1, generator=g), 2 + 3 * torch.randn(400, 1, generator=g)
    w2 = ((a[:, 0].sort().values.double() - b[:, 0].sort().values.double()) ** 2).mean().sqrt()
    assert sliced_wasserstein(a, b, 50, g) == pytest.approx(float(w2), rel=1e-9)
    # a shift c keeps the order of every projection: SW^2 = mean (theta . c)^2 -> |c|^2 / d
    c = torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    expected = float(c.norm() / 3**0.5)
    assert sliced_wasserstein(x, x + c, 20_000, g) == pytest.approx(expected, rel=0.03)


def test_sliced_wasserstein_matches_pot_on_the_same_directions():
    """POT's ot.sliced_wasserstein_distance (p = 2) is the reference the GMM-benchmark code uses."""
    import ot

    from reddiff_bench.metrics.distribution import sliced_wasserstein

    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 5, generator=g, dtype=torch.float64)
    y = 0.5 + 2 * torch.randn(300, 5, generator=g, dtype=torch.float64)
    ours = sliced_wasserstein(x, y, 700, torch.Generator().manual_seed(4), chunk=400)
    d = torch.Generator().manual_seed(4)  # the same draws, chunk by chunk
    theta = torch.cat([torch.randn(5, k, generator=d, dtype=torch.float64) for k in (400, 300)], dim=1)
    theta = theta / theta.norm(dim=0, keepdim=True)
    reference = ot.sliced_wasserstein_distance(x.numpy(), y.numpy(), projections=theta.numpy(), p=2)
    assert ours == pytest.approx(float(reference), rel=1e-10)
    # sw1: the mean over the same directions of scipy's 1-D W1 (the MCGdiff/TMPD tables' distance)
    from scipy.stats import wasserstein_distance

    from reddiff_bench.metrics.distribution import sliced_distances

    sw1 = sliced_distances(x, y, 700, torch.Generator().manual_seed(4), chunk=400)["sw1"]
    px, py = (x @ theta).numpy(), (y @ theta).numpy()
    expected = np.mean([wasserstein_distance(px[:, j], py[:, j]) for j in range(700)])
    assert sw1 == pytest.approx(float(expected), rel=1e-10)


def test_a_missing_weights_note_holds_on_any_machine(tmp_path, monkeypatch):
    """Regression (issue 27): the note named this machine's hub folder (/root/.cache/...), and the
    note reaches committed tables' footnotes. The folder and the error go to the log only."""
    from reddiff_bench.metrics.weights import describe_missing, log_missing

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub_home"))
    err = OSError("[Errno -2] Name or service not known")
    note = describe_missing("FID/KID Inception", "https://example.org/weights/pt_inception.pth", err)
    assert str(tmp_path) not in note and "/root/" not in note and "Name or service" not in note
    assert "pt_inception.pth" in note and "$TORCH_HOME/hub/checkpoints" in note and "https://example.org" in note
    assert str(tmp_path / "hub_home") in log_missing(err) and "Name or service" in log_missing(err)


def test_committed_study_outputs_name_no_machine_path():
    import re

    from .conftest import REPO

    machine = re.compile(r"/root/|/home/[a-z]|/Users/[A-Za-z]")
    found = [str(p.relative_to(REPO)) for p in sorted((REPO / "experiments").rglob("*"))
             if p.is_file() and p.suffix in (".csv", ".md", ".tex", ".yaml") and machine.search(p.read_text())]
    assert found == [], f"machine paths in committed study outputs: {found}"


class ProjectionInception(torch.nn.Module):
    """A fixed random projection to 8 features stands in for Inception (no weights here)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.randn(3 * 32 * 32, 8, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear") if x.shape[-1] != 32 else x
        return x.reshape(x.shape[0], -1) @ self.proj


def _images(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(n):
        x = (torch.rand(1, 3, 32, 32, generator=g) * 2 - 1 + shift).clamp(-1, 1)
        out.append((f"i{k}", lambda x=x: x, lambda x=x: (x * 0.5).clamp(-1, 1)))
    return out


def test_fid_against_a_statistics_file_equals_pytorch_fid_and_names_its_reference(monkeypatch, tmp_path):
    """Issue 23: FID could only compare with the run's own ground truth. Against pytorch-fid's
    statistics file (mu, sigma) it is pytorch-fid's calculate_frechet_distance on the same
    features; KID needs features (a stats-only file gives NaN and says why); the summary names
    the reference of each."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    from reddiff_bench.metrics.fid import gaussian_stats

    monkeypatch.setattr("reddiff_bench.metrics.suite.InceptionFeatures", ProjectionInception)
    net = ProjectionInception()
    reference = torch.cat([x() for _, x, _ in _images(40, seed=5, shift=0.3)])
    with torch.no_grad():
        ref_features = net(reference).double().numpy()
    mu, sigma = gaussian_stats(ref_features)
    stats = tmp_path / "imagenet_train_stats.npz"
    np.savez(stats, mu=mu, sigma=sigma)  # as pytorch-fid's --save-stats writes it
    images = _images(12, seed=1)
    suite = MetricSuite(lpips=None, fid=True, top1=False, fid_reference=str(stats), kid_reference=str(stats),
                        kid_subsets=5, kid_subset_size=6)
    summary = suite.finalize(images)
    with torch.no_grad():
        fake = torch.cat([net(x()) for _, x, _ in images]).double().numpy()
    expected = calculate_frechet_distance(*gaussian_stats(fake), mu, sigma)
    assert summary["fid"] == pytest.approx(expected, rel=1e-9) and summary["fid"] > 1
    assert summary["fid_reference"] == "statistics file imagenet_train_stats.npz (mu, sigma, extractor not recorded)"
    assert math.isnan(summary["kid"]) and "only their mean and covariance" in summary["notes"]["kid"]
    # features file for KID: the unbiased MMD against those features; ground truth for FID
    features = tmp_path / "val_features.npy"
    np.save(features, ref_features)
    suite = MetricSuite(lpips=None, fid=True, top1=False, kid_reference=str(features), kid_subsets=5,
                        kid_subset_size=6)
    summary = suite.finalize(images)
    with torch.no_grad():
        clean = torch.cat([net(c()) for _, _, c in images]).double().numpy()
    assert summary["fid"] == pytest.approx(calculate_frechet_distance(*gaussian_stats(fake), *gaussian_stats(clean)),
                                           rel=1e-9)
    assert summary["kid"] == pytest.approx(kernel_inception_distance(fake, ref_features, 5, 6)[0], rel=1e-12)
    assert summary["fid_reference"] == "ground truth (12 images)"
    assert summary["kid_reference"] == "features file val_features.npy (40 images, extractor not recorded)"


def test_bad_or_absent_references_are_refused_before_any_work_or_fall_back_with_a_note(tmp_path, monkeypatch):
    from reddiff_bench.errors import ConfigError
    from reddiff_bench.metrics.fid import FEATURE_EXTRACTOR, read_reference
    from reddiff_bench.run.pipeline import reference_problems

    from .helpers import compose_config

    absent = tmp_path / "fid_stats" / "imagenet256_train_mean_std.npz"
    cfg = compose_config([f"metrics.fid_reference={absent}"])
    assert any("imagenet256_train_mean_std.npz does not exist" in p and "fid-stats" in p
               for p in reference_problems(cfg))
    fallback = compose_config([f"metrics.fid_reference={absent}", "metrics.reference_fallback=true"])
    assert reference_problems(fallback) == []
    assert reference_problems(compose_config([f"metrics.fid_reference={absent}", "metrics.fid=false"])) == []
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, mu=np.zeros(2048), sigma=np.eye(2048), extractor=np.array("clean-fid torchscript Inception"))
    with pytest.raises(ConfigError, match="made with 'clean-fid torchscript Inception'"):
        read_reference(wrong)
    np.savez(wrong, mu=np.zeros(64), sigma=np.eye(64))
    assert any("expected (2048,)" in p for p in reference_problems(compose_config([f"metrics.kid_reference={wrong}"])))
    np.savez(wrong, means=np.zeros(3))
    with pytest.raises(ConfigError, match=r"holds \['means'\]: expected 'mu' and 'sigma'"):
        read_reference(wrong)
    ours = tmp_path / "ours.npz"
    np.savez(ours, mu=np.zeros(2048), sigma=np.eye(2048), extractor=np.array(FEATURE_EXTRACTOR))
    assert read_reference(ours).description == "statistics file ours.npz (mu, sigma)"
    # the paper presets' fallback: the ground truth, said in the notes
    monkeypatch.setattr("reddiff_bench.metrics.suite.InceptionFeatures", ProjectionInception)
    suite = MetricSuite(lpips=None, fid=True, top1=False, fid_reference=str(absent), reference_fallback=True,
                        kid_subsets=2, kid_subset_size=3)
    summary = suite.finalize(_images(4, seed=2))
    assert summary["fid_reference"] == "ground truth (4 images)" and math.isfinite(summary["fid"])
    assert "imagenet256_train_mean_std.npz) is absent: FID is against the run's ground truth" in \
        summary["notes"]["fid_reference"]


def test_a_folder_reference_is_computed_once_and_cached_and_fid_stats_writes_pytorch_fid_statistics(
        tmp_path, monkeypatch, capsys):
    from PIL import Image

    from reddiff_bench.cli.fid_stats import main
    from reddiff_bench.metrics.fid import FEATURE_EXTRACTOR, gaussian_stats
    from reddiff_bench.run import references

    folder = tmp_path / "refs"
    folder.mkdir()
    g = np.random.default_rng(0)
    for k in range(5):
        Image.fromarray(g.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    net = ProjectionInception()
    first = references.folder_reference(folder, net, size=32, cache_dir=tmp_path / "cache")
    assert first.description == "image folder refs (5 images at 32px)" and first.features.shape == (5, 8)
    monkeypatch.setattr(references, "compute_features", lambda *a, **k: pytest.fail("recomputed"))
    again = references.folder_reference(folder, net, size=32, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.features, first.features)
    monkeypatch.undo()
    monkeypatch.setattr(references, "InceptionFeatures", ProjectionInception)
    assert main([str(folder), "--out", str(tmp_path / "stats.npz"), "--size", "32", "--features", "--device",
                 "cpu"]) == 0
    written = np.load(tmp_path / "stats.npz")
    mu, sigma = gaussian_stats(first.features)
    np.testing.assert_allclose(written["mu"], mu, rtol=1e-12)
    np.testing.assert_allclose(written["sigma"], sigma, rtol=1e-12)
    assert str(written["extractor"]) == FEATURE_EXTRACTOR and written["features"].shape == (5, 8)
    assert "mu, sigma" in capsys.readouterr().out.replace("'", "")
    assert main([str(tmp_path / "none"), "--out", str(tmp_path / "x.npz")]) == 2
