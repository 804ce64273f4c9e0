#!/usr/bin/env bash
# For a GPU machine without network access, run once on a machine with it (the same checkout): fetch the
# pure-Python wheels benchmarks/gpu_run.sh installs there (diffusers, importlib_metadata; it needs torch, numpy,
# pillow, pyyaml, tqdm, safetensors and huggingface_hub already) into .whl/ and the decoded 64 px training
# images into .gpucache/ (both git-ignored through .git/info/exclude); copy both folders with the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info
for d in /.whl/ /.gpucache/; do grep -qx "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
python3 -m pip download --no-deps --only-binary=:all: -d .whl "diffusers==0.42.1" "importlib_metadata"
py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python
SDEDIT_CACHE=.gpucache "$py" -c "from sdedit.lab.data import load_image_set; print(load_image_set('fluent-emoji-3d', 64))"
ls -l .whl .gpucache/arrays
