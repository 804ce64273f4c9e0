#!/usr/bin/env bash
# On the device machine: install the carried wheels, say what the card is, then run the prepared GPU check.
#   run(command="bash benchmarks/gpu_run.sh", carry=[".whl"], timeout_s=480)
# Results land in $OUT (gpu_check.json, gpu_check.md, gpu_check.log); render them here with
#   python -m benchmarks.gpu_check --render <files_at>/gpu_check.json
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
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv || true
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, \
'cuda', torch.cuda.is_available())" || exit 1
timeout "${LIMIT:-450}" python3 -m benchmarks.gpu_check --out "$out" --deadline "${DEADLINE:-360}" "$@" 2>&1 \
  | tee "$out/gpu_check.log"
