"""Packaging: `pip install .` gives a working copy (the package, its static files, the configs, the embedded
models and the examples), and pyproject.toml's dependencies are requirements.txt's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from sdedit.configs import data_root

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the CI and the Space have it)

REPO = Path(__file__).resolve().parent.parent


def _requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_pyproject_declares_the_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["project"]["dependencies"] == _requirements()
    tests = [line.strip() for line in (REPO / "requirements-test.txt").read_text().splitlines() if line.strip()]
    assert project["project"]["optional-dependencies"]["test"] == tests


def test_the_data_root_is_home_then_checkout_then_the_installed_copy(tmp_path):
    home, checkout, prefix = tmp_path / "home", tmp_path / "src", tmp_path / "prefix"
    installed = prefix / "share" / "sdedit-studio"
    for root in (home, checkout, installed):
        (root / "configs").mkdir(parents=True)
    assert data_root(str(home), checkout, str(prefix)) == home
    assert data_root("", checkout, str(prefix)) == checkout
    (checkout / "configs").rmdir()
    assert data_root("", checkout, str(prefix)) == installed
    assert data_root("", REPO, str(prefix)) == REPO  # this checkout


@pytest.mark.slow
def test_pip_install_gives_a_copy_that_edits_offline(tmp_path):
    """Build the wheel from the tracked files, install it into a fresh prefix, and edit with the installed copy
    (its configs and embedded model found under the prefix, not in this checkout)."""
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((REPO / rel).read_bytes())
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", ".", "-w", str(tmp_path / "w")], cwd=src, check=True
    )
    wheel = next((tmp_path / "w").glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    data = "sdedit_studio-0.1.0.data/data/share/sdedit-studio/"
    for needed in (
        "sdedit/pipeline.py",
        "sdedit/outlines.py",
        f"{data}configs/fluent-emoji-64.yaml",
        f"{data}models/fluent-emoji-64/unet/diffusion_pytorch_model.safetensors",
        f"{data}models/fluent-emoji-upscaler-4x/model.safetensors",
        f"{data}examples/strokes-heart.png",
    ):
        assert needed in names, needed
    static = [n for n in files if n.startswith("sdedit/") and "/static/" in n]
    assert all(n in names for n in static)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], check=True)
    code = (
        "import json, numpy as np, sdedit, sdedit.configs as c\n"
        "pipe = sdedit.load_default()\n"
        "out = pipe(np.full((32, 32, 3), 200, np.uint8), strength=0.3, num_inference_steps=4, seed=0, progress=False,"
        " output_type='uint8')\n"
        "print(json.dumps({'package': sdedit.__file__, 'root': str(c.REPO_ROOT), 'shape': list(out.images.shape)}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "SDEDIT_HOME"}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]  # torch, diffusers...: this environment's
    run = subprocess.run([str(python), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["package"].startswith(str(venv)) and got["root"] == str(venv / "share" / "sdedit-studio")
    assert got["shape"] == [1, 32, 32, 3]
