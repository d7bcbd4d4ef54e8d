"""Operator identities over every task in conf/task (a new task is covered without new code)."""

from __future__ import annotations

import copy

import pytest
import torch
from hydra.utils import instantiate

from reddiff_bench.diffusion import make_generator
from reddiff_bench.operators import SVDOperator, operator_matrix, support_values
from reddiff_bench.tasks import tensor_hash

from .conftest import CONF
from .helpers import compose_config

TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
SHAPE = (3, 16, 16)


def build(task_name: str, ids=("a", "b"), dtype=torch.float64):
    cfg = compose_config([f"task={task_name}"])
    task = instantiate(cfg.task, _convert_="all")
    artifacts = [task.sample_artifacts(SHAPE, make_generator(0, "artifacts", task_name, i)) for i in ids]
    return task, artifacts, task.operator(artifacts, SHAPE).to(dtype)


def rand(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def masked(op, y):
    support = op.y_support(y)
    return y if support is None else y * support


@pytest.mark.parametrize("task_name", TASKS)
def test_adjoint_identity(task_name):
    _, _, op = build(task_name)
    x = rand((2, *SHAPE), 0)
    y = masked(op, rand(op(x).shape, 1))
    lhs = (op(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("task_name", TASKS)
def test_pseudo_inverse_identities(task_name):
    _, _, op = build(task_name)
    x = rand((2, *SHAPE), 2)
    y = masked(op, rand(op(x).shape, 3))
    assert torch.allclose(op(op.pinv(op(x))), op(x), atol=1e-9)
    assert torch.allclose(op.pinv(op(op.pinv(y))), op.pinv(y), atol=1e-9)


@pytest.mark.parametrize("task_name", TASKS)
def test_pinv_is_the_minimum_norm_least_squares_solution(task_name):
    _, artifacts, op = build(task_name, ids=("a",))
    A = operator_matrix(op, SHAPE)
    y = masked(op, rand(op(rand((1, *SHAPE), 4)).shape, 5))
    expected = torch.linalg.pinv(A) @ support_values(op, y)
    assert torch.allclose(op.pinv(y).reshape(-1), expected, atol=1e-8)


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
    r = op(rand((2, *SHAPE), 7))  # in the range of A
    a, b = torch.tensor([0.3, 2.0], dtype=torch.float64), torch.tensor([0.05, 0.5], dtype=torch.float64)
    z = op.gram_solve(r, a, b)
    back = a.reshape(-1, 1, 1, 1) * op(op.adjoint(z)) + b.reshape(-1, 1, 1, 1) * z
    assert torch.allclose(back, r, atol=1e-9)


@pytest.mark.parametrize("task_name", TASKS)
def test_batched_operator_equals_per_image_operators(task_name):
    task, artifacts, op = build(task_name)
    x = rand((2, *SHAPE), 8)
    for k in range(2):
        single = task.operator([artifacts[k]], SHAPE).double()
        assert torch.allclose(op(x)[k : k + 1], single(x[k : k + 1]))
        assert torch.allclose(op.pinv(op(x))[k : k + 1], single.pinv(single(x[k : k + 1])))


@pytest.mark.parametrize("task_name", TASKS)
def test_artifacts_are_deterministic_and_hashed(task_name):
    task, artifacts, _ = build(task_name, ids=("a", "b"))
    again = task.sample_artifacts(SHAPE, make_generator(0, "artifacts", task_name, "a"))
    assert tensor_hash(again) == tensor_hash(artifacts[0])
    for name, tensor in artifacts[0].items():
        changed = copy.deepcopy(artifacts[0])
        changed[name] = tensor.clone().flatten().roll(1).reshape(tensor.shape) + 1
        assert tensor_hash(changed) != tensor_hash(artifacts[0])


@pytest.mark.parametrize("task_name", TASKS)
def test_gradient_through_the_operator_matches_finite_differences(task_name):
    _, _, op = build(task_name, ids=("a",))
    x = rand((1, 3, 16, 16), 9).requires_grad_(True)
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
