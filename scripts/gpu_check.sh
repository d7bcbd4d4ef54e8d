#!/usr/bin/env bash
# GPU check: on a machine with CUDA GPUs (and the package installed: `make install`), run the tests
# marked `cuda` and print the figures the README keeps. At most about 10 minutes.
#   scripts/gpu_check.sh            # from the repository root
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
status=0

echo "== devices"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi not found"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'devices', torch.cuda.device_count())"

echo "== tests marked cuda"
timeout 180 $PY -m pytest -q -m cuda tests -p no:cacheprovider || status=1

echo "== time per network call of the ImageNet-256 ADM (random weights, the same cost), batch 1 and 8"
for batch in 1 8; do
  timeout 60 $PY -m reddiff_bench estimate +experiment=imagenet_inpaint --measure batch_size=$batch 2>&1 \
    | grep -E "^measured|^total" || status=1
done

echo "== one image under each solver on the ImageNet-256 ADM (random weights), 20 steps: time and peak memory"
timeout 90 $PY -m reddiff_bench -m solver=reddiff,dps,pgdm,ddrm solver.steps=20 model=adm_random \
  dataset=photos dataset.size=256 dataset.num_images=2 dataset.scale=1.0 task=inpaint_box \
  logger=none metrics.fid=false metrics.lpips=none progress=false device=cuda \
  paths.output_dir="${TMPDIR:-/tmp}/gpu_check" 2>&1 | sed -n '/^Sweep/,$p' || status=1

echo "== one image under each latent solver on the random-weight LDM (VQ f4, 256 px) and SD 1.x (KL f8, 512 px)"
echo "   architectures, 64x64 latents, 20 steps (DAPS: 10 levels): time, peak memory, decoder and encoder passes"
for model in "ldm_random 256" "sd_random 512"; do
  set -- $model
  common="model=$1 dataset=photos dataset.size=$2 dataset.scale=2.0 dataset.num_images=1 batch_size=1
    task=inpaint_box logger=none metrics.fid=false metrics.lpips=none progress=false device=cuda
    paths.output_dir=${TMPDIR:-/tmp}/gpu_check_latent"
  for solvers in "solver=latent_dps,latent_psld,latent_reddiff solver.steps=20" \
                 "solver=latent_resample solver.steps=20" "solver=latent_daps solver.annealing_steps=10"; do
    timeout 150 $PY -m reddiff_bench -m $solvers $common 2>&1 | sed -n '/^Sweep/,$p' || status=1
  done
done
exit $status
