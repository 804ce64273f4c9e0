#!/usr/bin/env bash
# One call on the device machine (about 9 minutes), in two phases:
#   1. train the embedded default on the GPU (configs/train-fluent-emoji-64-gpu.yaml) until the checkpoint holds
#      TRAIN_MINUTES of training, and pack the exported model folder and the sample grids into $OUT/model.tar
#      (log: $OUT/train.log);
#   2. the prepared check of the fast path (benchmarks/gpu_check.py) for CHECK_DEADLINE seconds.
# Here, once: bash benchmarks/gpu_wheels.sh (diffusers wheels into .whl/, training images into .gpucache/); then
#   run(command="bash benchmarks/gpu_run.sh", carry=[".whl", ".gpucache"], timeout_s=580)
# How the shipped model was made (a call may run 10 minutes, so 9.5 minutes of training took two): the call
# above (6 minutes of training, then 90 s of checks), then at once, on the still-warm machine, which keeps runs/,
# the same training command typed by hand with --max-minutes 9.5 (logs: benchmarks/results/gpu-train-h100-*.log).
# RESUME=1 now does that second call through this script:
#   run(command="RESUME=1 TRAIN_MINUTES=9.5 CHECK_DEADLINE=0 bash benchmarks/gpu_run.sh", carry=[...], timeout_s=320)
# Back here: tar -xf <files_at>/model.tar -C /tmp/gpu-model, and render the check with
#   python -m benchmarks.gpu_check --render <files_at>/gpu_check.json
# TRAIN_MINUTES=0 skips phase 1; CHECK_DEADLINE=0 skips phase 2; RESUME=1 continues the run already there.
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
