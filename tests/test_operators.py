"""Operator identities over every task in conf/task (a new task is covered without new code)."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from reddiff_bench.diffusion import make_generator
from reddiff_bench.operators import LinearOperator, SVDOperator, operator_matrix, support_values
from reddiff_bench.tasks import tensor_hash

from .conftest import CONF, MASK, NOT_AT_16
from .helpers import compose_config

TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml") if p.stem not in ("random_matrix", *NOT_AT_16))
SHAPE = (3, 16, 16)


def small_overrides(task_name: str, side: int = SHAPE[-1]) -> list[str]:
    """Overrides that fit a task to 16x16 test images (kernels larger than the image shrink to 9);
    a task whose config leaves a file path missing gets a test mask."""
    cfg = compose_config([f"task={task_name}"])
    degradation = cfg.task.degradation
    out = []
    keys = set(degradation.keys())  # `in` is False for missing (???) values
    if "size" in keys and int(degradation.size) > side:
        out.append(f"task.degradation.size={side // 2 + 1}")  # an odd kernel that fits
    if "path" in keys and OmegaConf.is_missing(degradation, "path"):
        out.append(f"task.degradation.path={MASK['path']}")
    elif "path" in keys and str(degradation.get("pick")) == "index":  # RED-diff's mask file: the test's
        out.append(f"task.degradation.path={MASK['packed']}")
    return out


@functools.cache
def load_task(task_name: str, side: int):
    """The task of conf/task/<task_name>.yaml, fitted to side x side images (composed once)."""
    cfg = compose_config([f"task={task_name}"] + small_overrides(task_name, side))
    return instantiate(cfg.task, _convert_="all")


def build(task_name: str, ids=("a", "b"), dtype=torch.float64, shape=SHAPE):
    task = load_task(task_name, shape[-1])
    artifacts = [task.sample_artifacts(shape, make_generator(0, "artifacts", task_name, i)) for i in ids]
    return task, artifacts, task.operator(artifacts, shape).to(dtype)


def linear_only(op):
    if not op.linear:
        pytest.skip("nonlinear operator: no adjoint, pseudo-inverse or SVD")


def with_pinv(op):
    linear_only(op)
    if type(op).pinv is LinearOperator.pinv:
        pytest.skip("linear operator without a pseudo-inverse (a blur with the reflect boundary)")


def rand(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def truncated_forward(op, x):
    """``A x`` with the singular values that the operator's threshold drops set to zero: the
    operator that ``pinv`` and the spectral solves invert exactly."""
    if not isinstance(op, SVDOperator):
        return op(x)
    s = op.singular_values().to(x.dtype)
    return op.u(torch.where(op._nonzero(s), s, 0) * op.select(op.vt(x)))


def masked(op, y):
    support = op.y_support(y)
    return y if support is None else y * support


@pytest.mark.parametrize("task_name", TASKS)
def test_adjoint_identity(task_name):
    _, _, op = build(task_name)
    linear_only(op)
    x = rand((2, *SHAPE), 0)
    y = masked(op, rand(op(x).shape, 1))
    lhs = (op(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("task_name", TASKS)
def test_pseudo_inverse_identities(task_name):
    _, _, op = build(task_name)
    with_pinv(op)
    x = rand((2, *SHAPE), 2)
    y = masked(op, rand(op(x).shape, 3))
    assert torch.allclose(op(op.pinv(op(x))), truncated_forward(op, x), atol=1e-7)
    assert torch.allclose(op.pinv(op(op.pinv(y))), op.pinv(y), atol=1e-7)


@pytest.mark.parametrize("task_name", TASKS)
def test_pinv_is_the_minimum_norm_least_squares_solution(task_name):
    small = (3, 8, 8)  # a dense matrix of 192 columns
    _, artifacts, op = build(task_name, ids=("a",), shape=small)
    with_pinv(op)
    A = operator_matrix(op, small)
    y = masked(op, rand(op(rand((1, *small), 4)).shape, 5))
    rcond = getattr(op, "rcond", 1e-6) if isinstance(op, SVDOperator) else 1e-10
    expected = torch.linalg.pinv(A, rtol=rcond) @ support_values(op, y)
    assert torch.allclose(op.pinv(y).reshape(-1), expected, atol=1e-6)


@pytest.mark.parametrize("task_name", TASKS)
def test_svd_parts_reproduce_the_operator(task_name):
    _, _, op = build(task_name)
    if not isinstance(op, SVDOperator):
        pytest.skip("no SVD")
    x = rand((2, *SHAPE), 6)
    y = op(x)
    assert torch.allclose(op.v(op.vt(x)), x, atol=1e-10)  # V orthogonal
    assert torch.allclose(op.u(op.ut(y)), y, atol=1e-10)  # U orthogonal
    svd_forward = op.u(op.singular_values() * op.select(op.vt(x)))
    assert torch.allclose(svd_forward, y, atol=1e-10)
    svd_adjoint = op.v(op.embed(op.singular_values() * op.ut(y)))
    assert torch.allclose(svd_adjoint, op.adjoint(y), atol=1e-10)
    assert torch.allclose(op.select(op.embed(op.ut(y))), op.ut(y))


@pytest.mark.parametrize("task_name", TASKS)
def test_gram_solve_inverts_the_regularised_gram_operator(task_name):
    _, _, op = build(task_name)
    if not isinstance(op, SVDOperator):
        pytest.skip("no SVD")
    r = truncated_forward(op, rand((2, *SHAPE), 7))  # in the range of (truncated) A
    a, b = torch.tensor([0.3, 2.0], dtype=torch.float64), torch.tensor([0.05, 0.5], dtype=torch.float64)
    z = op.gram_solve(r, a, b)
    back = a.reshape(-1, 1, 1, 1) * truncated_forward(op, op.adjoint(z)) + b.reshape(-1, 1, 1, 1) * z
    assert torch.allclose(back, r, atol=1e-9)


@pytest.mark.parametrize("task_name", TASKS)
def test_batched_operator_equals_per_image_operators(task_name):
    task, artifacts, op = build(task_name)
    x = rand((2, *SHAPE), 8).clamp(-1, 1)
    for k in range(2):
        single = task.operator([artifacts[k]], SHAPE).double()
        assert torch.allclose(op(x)[k : k + 1], single(x[k : k + 1]))
        y = op(x)
        assert torch.allclose(op.init_estimate(y)[k : k + 1], single.init_estimate(y[k : k + 1]), atol=1e-8)


# what each task draws per image (saved under measurements/ and hashed into the row), and whether it
# differs between images (a seeded random mask or kernel) or is the same for all (a fixed one)
ARTIFACTS = {
    "deblur_gauss": (["kernel"], False), "deblur_motion": (["kernel"], True), "deblur_uniform": (["kernel"], False),
    "inpaint_box": (["mask"], False), "inpaint_file": (["mask"], False), "inpaint_half": (["mask"], False),
    "inpaint_freeform_10_20": (["mask"], True), "inpaint_freeform_20_30": (["mask"], True),
    "inpaint_random": (["mask"], True), "inpaint_random_box": (["mask"], True),
    "sr4_then_inpaint": (["then.mask"], True),
    "dps_deblur_gauss": (["kernel"], False), "dps_deblur_motion": (["kernel"], True),
    "dps_inpaint_box": (["mask"], True), "dps_inpaint_random": (["mask"], True),
    "reddiff_inpaint_20ff": (["mask"], False),  # mask i of the file for image i: here both images have index 0
}


@pytest.mark.parametrize("task_name", TASKS)
def test_artifacts_are_deterministic_per_image_and_hashed(task_name):
    """Each task draws exactly the artifacts it declares (none for the others); they come back the
    same from the same (seed, task, image id), differ between images where they are random, and any
    change to them changes their hash."""
    task, artifacts, _ = build(task_name, ids=("a", "b"))
    names, per_image = ARTIFACTS.get(task_name, ([], False))
    assert sorted(artifacts[0]) == names
    if not names:
        return
    again = task.sample_artifacts(SHAPE, make_generator(0, "artifacts", task_name, "a"))
    assert tensor_hash(again) == tensor_hash(artifacts[0])
    assert (tensor_hash(artifacts[0]) != tensor_hash(artifacts[1])) == per_image
    for name, tensor in artifacts[0].items():
        changed = copy.deepcopy(artifacts[0])
        changed[name] = tensor.clone().flatten().roll(1).reshape(tensor.shape) + 1
        assert tensor_hash(changed) != tensor_hash(artifacts[0])


@pytest.mark.parametrize("task_name", TASKS)
def test_gradient_through_the_operator_matches_finite_differences(task_name):
    _, _, op = build(task_name, ids=("a",))
    x = (0.5 * rand((1, 3, 16, 16), 9)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: op(z).square().sum(), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_noise_only_on_measured_entries_and_seeded():
    task, artifacts, op = build("inpaint_random", ids=("a",), dtype=torch.float32)
    x = torch.zeros(1, *SHAPE)
    y1 = task.measure(op, x, [make_generator(0, "noise", "a")])
    y2 = task.measure(op, x, [make_generator(0, "noise", "a")])
    assert torch.equal(y1, y2)
    mask = artifacts[0]["mask"]
    assert torch.all(y1[0][:, mask[0] == 0] == 0)
    observed = y1[0][:, mask[0] == 1]
    assert observed.std().item() == pytest.approx(task.sigma_y, rel=0.15)
