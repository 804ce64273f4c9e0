#!/usr/bin/env bash
# The GPU run, on a machine with one CUDA GPU (about 9 minutes on an H100), from the repository's root:
#   bash benchmarks/gpu_run.sh                                        # train 6 minutes, then 90 s of the check
#   TRAIN_MINUTES=0 CHECK_DEADLINE=360 bash benchmarks/gpu_run.sh     # the fast-path check only, all its groups
#   RESUME=1 TRAIN_MINUTES=9.5 CHECK_DEADLINE=0 bash benchmarks/gpu_run.sh   # train on to 9.5 minutes in all
# Two phases:
#   1. train the embedded default (configs/train-fluent-emoji-64-gpu.yaml) until the checkpoint holds
#      TRAIN_MINUTES of training, and pack the exported model folder and the sample grids into $OUT/model.tar
#      (log: $OUT/train.log); RESUME=1 continues the run in runs/ instead of starting a new one;
#   2. the check of the fast path (benchmarks/gpu_check.py) for CHECK_DEADLINE seconds; CHECK_GROUPS picks its
#      groups (default unet,edit).
# $OUT defaults to benchmarks/results/gpu. A machine without network access needs diffusers' wheels in .whl/
# and the training images in .gpucache/: `bash benchmarks/gpu_wheels.sh` on a machine with access fetches both,
# and this script installs .whl/ when it is there. Afterwards:
#   tar -xf "$OUT/model.tar" -C /tmp/gpu-model                        # the trained model and its samples
#   python -m benchmarks.gpu_check --render "$OUT/gpu_check.json"     # the check's section of docs/performance.md
# The shipped model: 6 minutes of training, then RESUME=1 to 9.5 minutes in all (the training logs are
# benchmarks/results/gpu-train-h100-call1.log and -call2.log).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
export SDEDIT_CACHE="$PWD/.gpucache" TQDM_MININTERVAL=15
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv || true
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, \
'cuda', torch.cuda.is_available())" || exit 1

train_minutes="${TRAIN_MINUTES:-6}"
if [ "$train_minutes" != "0" ]; then
  run_dir=runs/fluent-emoji-64-gpu
  [ "${RESUME:-0}" = "1" ] || rm -rf "$run_dir"
  timeout $(( ${train_minutes%.*} * 60 + 150 )) python3 -m sdedit train --config configs/train-fluent-emoji-64-gpu.yaml \
    --max-minutes "$train_minutes" 2>&1 | tee "$out/train.log"
  echo "train exit: ${PIPESTATUS[0]}"
  tar -cf "$out/model.tar" -C "$run_dir" model samples && ls -l "$out/model.tar"
fi

deadline="${CHECK_DEADLINE:-90}"
if [ "$deadline" != "0" ]; then
  timeout $(( deadline + 60 )) python3 -m benchmarks.gpu_check --out "$out" --deadline "$deadline" \
    --groups "${CHECK_GROUPS:-unet,edit}" 2>&1 | tee "$out/gpu_check.log"
fi
