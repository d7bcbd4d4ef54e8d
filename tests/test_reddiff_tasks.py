"""RED-diff's task set (conf/task/reddiff_*.yaml) against RED-diff's code (NVlabs/RED-diff 66482f2)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from reddiff_bench.errors import ConfigError
from reddiff_bench.operators import MaskFile

from .conftest import write_packed_masks
from .helpers import compose_config, compose_task, relative_error


def reddiff_masks(path) -> np.ndarray:
    """RED-diff's reading of its mask file (utils/degredations.py load_mask), written out here."""
    d = np.load(path)
    return np.unpackbits(d["m"], count=int(np.prod(d["shape"]))).reshape(d["shape"]).view(bool)


@pytest.mark.parametrize("flat", [True, False], ids=["n_CHW", "n_C_H_W"])
def test_a_reddiff_mask_file_drives_inpainting_as_reddiff_indexes_it(tmp_path, flat):
    """Regression (issue 27): MaskFile read only the key 'mask' (KeyError on 'm'/'shape') and picked at
    random. Image i of the dataset takes mask i modulo their number, each channel its own pixels."""
    path = write_packed_masks(tmp_path / "20ff.npz", n=3, channels=3, side=16, flat=flat)
    expected = reddiff_masks(path).reshape(3, 3, 16, 16).astype("float32")
    cfg = compose_config(["task=reddiff_inpaint_20ff", f"task.degradation.path={path}"])
    task = instantiate(cfg.task, _convert_="all")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    for index in range(7):
        artifacts = task.sample_artifacts((3, 16, 16), torch.Generator().manual_seed(index), index=index)
        np.testing.assert_array_equal(artifacts["mask"].numpy(), expected[index % 3])
        op = task.operator([artifacts], (3, 16, 16))
        # Inpainting2.H: the flattened image times the flattened mask
        flat = x[0].reshape(-1).numpy() * expected[index % 3].reshape(-1)
        np.testing.assert_array_equal(op(x)[0].reshape(-1).numpy(), flat)
        y = task.measure(op, x, [torch.Generator().manual_seed(0)])
        assert bool((y[0][expected[index % 3] == 0] != 0).all())  # noise on the missing entries too (main.py)


def test_a_reddiff_mask_file_is_upsampled_as_reddiff_repeats_it(tmp_path):
    path = write_packed_masks(tmp_path / "20ff.npz", n=2, channels=3, side=8)
    mask = MaskFile(str(path), pick="index").sample_artifacts((3, 16, 16), torch.Generator(), index=1)["mask"]
    expected = reddiff_masks(path).reshape(2, 3, 8, 8)[1].repeat(2, axis=1).repeat(2, axis=2)  # in2: np.repeat
    np.testing.assert_array_equal(mask.numpy(), expected.astype("float32"))


def test_broken_mask_files_are_refused_by_name(tmp_path):
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, m=np.zeros(10, dtype=np.uint8), shape=np.array([3, 3 * 16 * 16]))
    with pytest.raises(ConfigError, match="truncated"):
        MaskFile(str(truncated))
    other = tmp_path / "other.npz"
    np.savez(other, masks=np.ones((4, 4)))
    with pytest.raises(ConfigError, match=r"other.npz holds \['masks'\].*'m' and 'shape'"):
        MaskFile(str(other))
    from reddiff_bench.run.pipeline import instantiate_group

    with pytest.raises(ConfigError, match="masks/20ff.npz does not exist"):
        instantiate_group(compose_config(["task=reddiff_inpaint_20ff", f"paths.data_dir={tmp_path}"]).task, "task")


def test_the_run_gives_each_image_its_dataset_index(tmp_path):
    """Through the pipeline: the saved artifacts of image k are mask k (modulo the number of masks)."""
    from reddiff_bench.run.pipeline import run

    from .test_pipeline import FAST

    path = write_packed_masks(tmp_path / "20ff.npz", n=2, channels=3, side=16)
    run_dir = tmp_path / "run"
    cfg = compose_config(FAST + ["logger=none", "solver=pinv", "task=reddiff_inpaint_20ff",
                                 f"task.degradation.path={path}", "metrics.fid=false"], run_dir=run_dir)
    run(cfg, run_dir)
    expected = reddiff_masks(path).reshape(2, 3, 16, 16).astype("float32")
    ids = json.loads((run_dir / "dataset_ids.json").read_text())
    for index, image_id in enumerate(ids):
        saved = torch.load(run_dir / "measurements" / f"{image_id}.pt", weights_only=False)
        np.testing.assert_array_equal(saved["artifact_mask"].numpy(), expected[index % 2])


# --- operators replayed against RED-diff's own builder (tests/fixtures/reddiff/record.py) -------------------

REFERENCE = np.load(Path(__file__).parent / "fixtures" / "reddiff" / "reddiff_reference.npz")
X = torch.from_numpy(REFERENCE["x"])[None]  # (1, 3, 64, 64)


task, relative = compose_task, relative_error


def build(name: str, shape=(3, 64, 64)):
    t = task(name)
    return t.operator([t.sample_artifacts(shape, torch.Generator())], shape)


@pytest.mark.parametrize("name,deg", [("reddiff_deblur_uni", "deblur_uni"), ("reddiff_deblur_gauss", "deblur_gauss")])
def test_shipped_deblurs_reproduce_reddiff_operators(name, deg):
    op = build(name)
    with torch.no_grad():
        y = op(X)
        assert relative(y, REFERENCE[f"{deg}_y"]) < 1e-5  # H.H(x), flattened channel-major as RED-diff returns it
        # H.H_pinv(H.H(x)): RED-diff's float32 bases, made orthogonal in float64 here, differ by float32
        # rounding, which the division by singular values down to 3e-2 squared amplifies
        assert relative(op.pinv(y), REFERENCE[f"{deg}_pinv"]) < 1e-4
    # the same singular values, paired with the modes as singulars() pairs them (each value thrice)
    np.testing.assert_allclose(np.sort(op.singular_values().numpy().reshape(-1)),
                               np.sort(REFERENCE[f"{deg}_singulars"]), rtol=1e-6, atol=1e-7)


def centred_matrix(kernel: np.ndarray, n: int) -> np.ndarray:
    """The intended 1-D blur: every tap, centred, zero boundary (written independently)."""
    half = len(kernel) // 2
    return np.array([[kernel[j - i + half] if abs(j - i) <= half else 0.0 for j in range(n)] for i in range(n)])


GAUSS_TAPS = np.exp(-0.5 * (np.arange(-2, 3) / 25) ** 2)


@pytest.mark.parametrize("name,taps", [("reddiff_deblur_uni_intended", np.full(9, 1 / 9)),
                                       ("reddiff_deblur_gauss_intended", GAUSS_TAPS / GAUSS_TAPS.sum())])
def test_intended_deblurs_are_the_centred_separable_matrices(name, taps):
    from reddiff_bench.operators import operator_matrix

    m = centred_matrix(taps, 12)
    A = operator_matrix(build(name, (3, 12, 12)), (3, 12, 12)).numpy()
    np.testing.assert_allclose(A, np.kron(np.eye(3), np.kron(m, m)), atol=1e-7)


def test_the_shipped_defects_measured():
    """What RED-diff's Deblurring does besides blurring (operators/reddiff_blur.py): the gain of the
    dropped tap, and colour from a grey image (the singular values of another channel's modes)."""
    from reddiff_bench.operators.reddiff_blur import blur_matrix, reddiff_kernel

    assert float(blur_matrix(reddiff_kernel("uniform"), 32, True)[16].sum()) == pytest.approx(8 / 9)
    assert float(blur_matrix(reddiff_kernel("gaussian"), 32, True)[16].sum()) == pytest.approx(0.80, abs=0.002)
    grey = X[:, :1].expand(1, 3, 64, 64)
    with torch.no_grad():
        shipped, intended = build("reddiff_deblur_gauss")(grey), build("reddiff_deblur_gauss_intended")(grey)
    part = float((shipped[:, 0] - shipped[:, 1]).norm() / shipped[:, 0].norm())
    assert part > 1e-4  # the channels part (1.8e-3 relative on a 256 x 256 photo)
    assert float((intended[:, 0] - intended[:, 1]).abs().max()) == 0.0


def test_reddiff_phase_retrieval_and_its_start():
    x = X[..., :32, :32]
    op = build("reddiff_phase_retrieval", (3, 32, 32))
    with torch.no_grad():
        y = op(x)
        assert relative(y[0, 0], REFERENCE["phase_y"]) < 1e-5
        assert relative(op.init_estimate(y), REFERENCE["phase_init"]) < 1e-5  # H.H_pinv(y): RED-Diff's init
    assert task("reddiff_phase_retrieval").published["reddiff"]["lr"] == 0.5  # tuned on this operator
    assert "reddiff" not in task("phase_retrieval").published


def test_reddiff_jpeg_reproduces_reddiff_and_has_no_gradient():
    """jpeg_decode(jpeg_encode(x, 20), 20) to float32 rounding, the same IJG tables as the
    project's JPEG; hard rounding leaves a data term no gradient (what RED-Diff's JPEG runs do)."""
    from reddiff_bench.operators.nonlinear import quality_tables

    np.testing.assert_array_equal(torch.stack(quality_tables(20)).numpy(), REFERENCE["jpeg20_q"])
    op = build("reddiff_jpeg20")
    x = X.clone().requires_grad_(True)
    y = op(x)
    assert relative(y.detach(), REFERENCE["jpeg20_y"]) < 1e-5
    (grad,) = torch.autograd.grad((y - y.detach() + 0.1).square().sum(), x)
    assert float(grad.abs().max()) == 0.0
    project = build("jpeg10")  # the project's: soft rounding, a useful gradient
    (grad,) = torch.autograd.grad(project(x).square().sum(), x)
    assert float(grad.abs().max()) > 0
    assert task("reddiff_jpeg20").published["reddiff"]["lr"] == 0.5 and not task("jpeg10").published


# --- the nonlinear blur: bkse's kernel network (tests/fixtures/bkse/record.py) ---------------------------------

BKSE = torch.load(Path(__file__).parent / "fixtures" / "bkse" / "bkse_reference.pt", weights_only=False)


def small_network_weights(tmp_path, wrap: str | None = None) -> Path:
    path = tmp_path / "GOPRO_wVAE.pth"
    torch.save(BKSE["state_dict"] if wrap is None else {wrap: BKSE["state_dict"]}, path)
    return path


def small_blur(path) -> "Task":  # noqa: F821
    return task("deblur_nonlinear", f"task.degradation.weights={path}", "task.degradation.nf=4",
                "task.degradation.front_blocks=1", "task.degradation.back_blocks=1")


@pytest.mark.parametrize("wrap", [None, "state_dict"])
def test_the_kernel_network_loads_bkse_weights_and_reproduces_bkse(tmp_path, wrap):
    """Our KernelNetwork with bkse's weights (a small network drawn by bkse's own code) computes
    KernelWizard.adaptKernel; the operator maps [-1, 1] to [0, 1] and back and clips, as DPS and
    RED-diff do."""
    blur = small_blur(small_network_weights(tmp_path, wrap))
    x01 = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    assert float(x01.double().sum()) == float(BKSE["x_sum"])  # the recorded input, drawn again
    op = blur.operator([{"code": BKSE["code"][0]}], (3, 128, 128))
    with torch.no_grad():
        assert relative(op.network(x01, BKSE["code"]), BKSE["y"]) < 1e-5
        y = op(x01 * 2 - 1)
    assert relative(y, (2 * BKSE["y"] - 1).clamp(-1, 1)) < 1e-5


def test_each_image_has_its_own_saved_code_and_the_data_term_one_kernel(tmp_path):
    """Regression (issue 27): the references draw a new kernel code at every call, so y and each
    data-term evaluation use different kernels; here one code per image, drawn from its generator."""
    blur = small_blur(small_network_weights(tmp_path))
    a = blur.sample_artifacts((3, 128, 128), torch.Generator().manual_seed(0))
    again = blur.sample_artifacts((3, 128, 128), torch.Generator().manual_seed(0))
    other = blur.sample_artifacts((3, 128, 128), torch.Generator().manual_seed(1))
    assert a["code"].shape == (32, 1, 1) and torch.equal(a["code"], again["code"])
    assert not torch.equal(a["code"], other["code"])
    op = blur.operator([a], (3, 128, 128))
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    assert torch.equal(op(x), op(x))  # the same kernel at every call
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(op(x).square().sum(), x)
    assert torch.isfinite(grad).all() and float(grad.abs().max()) > 0


def test_missing_or_wrong_weights_are_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="GOPRO_wVAE.pth are not at .*blur-kernel-space-exploring"):
        small_blur(tmp_path / "absent" / "GOPRO_wVAE.pth").sample_artifacts((3, 128, 128), torch.Generator())
    wrong = tmp_path / "GOPRO_wVAE.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, wrong)  # what RED-diff's loading call "loads"
    with pytest.raises(ConfigError, match="tensors are missing"):
        small_blur(wrong).sample_artifacts((3, 128, 128), torch.Generator())
    with pytest.raises(ConfigError, match="multiples of 128"):
        small_blur(small_network_weights(tmp_path)).sample_artifacts((3, 64, 64), torch.Generator())


@pytest.mark.slow  # a run through the pipeline: about 8 s
def test_free_form_inpainting_reads_a_published_mask_file_indexed_as_the_reference_does(tmp_path):
    """Issue 23: the free-form tasks only generated Palette-style strokes; a user with RED-diff's (or
    PiGDM's) 20ff.npz could not use it. With masks_from, image k of the run takes mask k modulo the
    number of masks (Inpainting2.set_indices), and the task's name says which masks ran."""
    from reddiff_bench.run.pipeline import run

    from .test_pipeline import FAST

    path = write_packed_masks(tmp_path / "20ff.npz", n=2, channels=3, side=16)
    run_dir = tmp_path / "run"
    cfg = compose_config(FAST + ["logger=none", "solver=pinv", "task=inpaint_freeform_20_30",
                                 f"task.degradation.masks_from={path}", "metrics.fid=false"], run_dir=run_dir)
    rows = run(cfg, run_dir).rows
    assert set(rows["task"]) == {"inpaint_freeform_20_30@20ff"}
    expected = reddiff_masks(path).reshape(2, 3, 16, 16).astype("float32")
    ids = json.loads((run_dir / "dataset_ids.json").read_text())
    assert len(ids) == 3
    for index, image_id in enumerate(ids):
        saved = torch.load(run_dir / "measurements" / f"{image_id}.pt", weights_only=False)
        np.testing.assert_array_equal(saved["artifact_mask"].numpy(), expected[index % 2])
    dense = tmp_path / "lorem.npy"  # DDRM/DDNM ship one dense (H, W) mask, 1 = kept
    np.save(dense, (np.arange(256).reshape(16, 16) % 3 > 0).astype("float32"))
    task = compose_task("inpaint_freeform_10_20", f"task.degradation.masks_from={dense}")
    assert task.name == "inpaint_freeform_10_20@lorem"
    mask = task.sample_artifacts((3, 16, 16), torch.Generator(), index=5)["mask"]
    np.testing.assert_array_equal(mask[0].numpy(), np.load(dense))
    generated = compose_task("inpaint_freeform_10_20")
    assert generated.name == "inpaint_freeform_10_20" and not getattr(generated.degradation, "indexed", False)
    from reddiff_bench.run.pipeline import instantiate_group

    with pytest.raises(ConfigError, match=r"nope.npz does not exist \(task.degradation.masks_from\)"):
        instantiate_group(compose_config(["task=inpaint_freeform_10_20",
                                          f"task.degradation.masks_from={tmp_path}/nope.npz"]).task, "task")
