#!/usr/bin/env bash
# Here (not on the device machine), once before a GPU run: the device image has torch, numpy, pillow, pyyaml,
# tqdm, safetensors and huggingface_hub, but not diffusers. Fetch the pure-Python wheels it needs into .whl/
# (git-ignored through .git/info/exclude), which the run carries: run(..., carry=[".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: -d .whl "diffusers==0.42.1" "importlib_metadata"
ls -l .whl
