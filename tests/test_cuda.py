"""The CUDA paths (marked ``cuda``; skipped without a CUDA device). ``scripts/gpu_check.sh`` runs
them with the figures on a machine with GPUs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from .test_scale import QUICK, assert_same_rows, cli

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cost_meter_measures_peak_device_memory_and_synchronises():
    from reddiff_bench.metrics.cost import CostMeter

    device = torch.device("cuda")
    with CostMeter(device) as cost:
        block = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)  # 256 MiB
        torch.cuda._sleep(10**7)  # work queued on the device: the meter must wait for it
        del block
    assert cost.result.peak_mem_kind == "cuda_max_allocated"
    assert 256 <= cost.result.peak_mem_mb < 256 + 64
    assert cost.result.seconds > 1e-4


@pytest.mark.parametrize("kind,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_autocast_runs_the_network_in_half_precision_and_returns_float32(kind, dtype):
    from reddiff_bench.priors.adm import random_adm_prior

    full = random_adm_prior("adm_ffhq256", image_size=64).cuda()
    half = random_adm_prior("adm_ffhq256", image_size=64, autocast=kind).cuda()
    half.load_state_dict(full.state_dict())
    x = torch.randn(2, 3, 64, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    seen = []  # the dtype each convolution of the half-precision prior computed in
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
             for m in half.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        a, b = full.predict(x, 500).eps, half.predict(x, 500).eps
    for hook in hooks:
        hook.remove()
    assert seen and set(seen) == {dtype}  # every convolution ran in lower precision
    assert b.dtype == torch.float32
    assert float((a - b).norm() / a.norm()) < (1e-2 if kind == "fp16" else 3e-2)


def test_gpu_launcher_pins_each_job_to_its_own_device(tmp_path):
    n = torch.cuda.device_count()
    seeds = ",".join(str(s) for s in range(2 * n))
    proc = cli("-m", *QUICK, "solver=reddiff", "solver.steps=50", "dataset.num_images=4", f"seed={seeds}",
               "hydra/launcher=gpus", f"paths.output_dir={tmp_path}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spans = []
    for job in sorted((tmp_path / "default" / "multirun").glob("*seed=*")):
        rows = pd.read_csv(job / "metrics.csv")
        summary = json.loads((job / "summary.json").read_text())
        slot = int(rows["gpu_slot"].iloc[0])
        assert summary["device"] == f"cuda:{slot}" and rows["peak_mem_kind"].eq("cuda_max_allocated").all()
        state = json.loads((job / "state.json").read_text())
        spans.append((slot, state["started"], state["finished"]))
    assert len(spans) == 2 * n and {s for s, _, _ in spans} <= set(range(n))
    for i, (slot_a, a0, a1) in enumerate(spans):
        for slot_b, b0, b1 in spans[i + 1 :]:
            assert slot_a != slot_b or a1 <= b0 or b1 <= a0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_torchrun_with_nccl_gives_the_rows_of_one_process(tmp_path):
    n = torch.cuda.device_count()
    args = QUICK + ["solver=reddiff", "solver.steps=30", f"dataset.num_images={2 * n + 1}", "batch_size=1",
                    "device=cuda"]
    single = cli(*args, f"hydra.run.dir={tmp_path}/single")
    assert single.returncode == 0, single.stderr[-2000:]
    multi = cli("--standalone", f"--nproc_per_node={n}", "-m", "reddiff_bench", *args,
                f"hydra.run.dir={tmp_path}/multi",
                module=("-m", "torch.distributed.run"), timeout=600)
    assert multi.returncode == 0, multi.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "multi" / "metrics.csv")
    assert sorted(rows["rank"].unique()) == list(range(n))
    assert_same_rows(rows, pd.read_csv(tmp_path / "single" / "metrics.csv"))


def test_memory_profile_on_cuda_records_allocated_and_reserved_and_the_snapshot(tmp_path):
    proc = cli(*QUICK, "solver=dps", "solver.steps=10", "dataset.num_images=2", "device=cuda",
               "profile.memory_snapshot=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    memory = pd.read_csv(tmp_path / "run" / "memory.csv")
    assert list(memory["step"]) == list(range(10)) and set(memory["kind"]) == {"cuda_allocated"}
    assert (memory["bytes"] > 0).all() and (memory["reserved_bytes"] >= memory["bytes"]).all()
    assert (tmp_path / "run" / "memory_snapshot.pickle").stat().st_size > 0
