"""SDEdit Studio: paint strokes or edit a photo, and a diffusion model makes it realistic (Meng et al., 2022).

Run `python app.py` (http://127.0.0.1:7860; `--port`, GRADIO_SERVER_PORT and GRADIO_SERVER_NAME are
respected). The same file runs unchanged as a Hugging Face Space. This file sets up the environment and
starts the server; the app lives in sdedit/studio/ (the page: sdedit/studio/page.py). API: see docs/app.md.
"""

from __future__ import annotations

import contextlib
import os

# Offline unless the operator says otherwise: the embedded model needs no network, and a Space's
# preload_from_hub puts the configured Hub models in the local cache. Set before any HF import reads them.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if os.environ.get("SDEDIT_ALLOW_CUSTOM_MODELS", "").lower() not in ("1", "true", "yes", "on"):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The CPU thread policy (sdedit/threads.py): OpenMP is capped at the usable cores before torch loads (it reads its
# variables once); each edit then takes the cores free at that moment. A user's OMP_* / SDEDIT_THREADS win.
from sdedit import threads  # stdlib only: it loads neither torch nor gradio

threads.apply()

# ZeroGPU patches CUDA when `spaces` is imported, so it must come before anything imports torch; the edit and
# sweep endpoints are wrapped in spaces.GPU by sdedit.studio.ui.gpu. Off Spaces (no package) they run as they are.
with contextlib.suppress(ImportError):
    import spaces  # noqa: F401

import argparse
import logging

from PIL import Image

from sdedit.studio import jobs, limits, models
from sdedit.studio.guard import limit_malloc_arenas
from sdedit.studio.page import build_demo, launch

__all__ = ["build_demo", "launch", "main"]

log = logging.getLogger("sdedit.app")
# PIL's own decompression-bomb guard, set to our limit: Gradio decodes the editor's and the private
# endpoints' images before our code runs, and PIL then refuses anything over twice this from the header.
Image.MAX_IMAGE_PIXELS = limits.APP_LIMITS.image.max_pixels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SDEdit Studio web app")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--host", default=None, help="address (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    args = parser.parse_args(argv)
    limit_malloc_arenas()  # before the server's threads start: keeps memory flat under load (studio.guard)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Load the embedded model before the first visitor (and before ZeroGPU forks); warm it with one small
    # edit so that the first request costs what every other one does (SDEDIT_WARMUP=0 skips the edit).
    if os.environ.get("SDEDIT_WARMUP", "1") != "0" and not limits.ZERO_GPU:
        log.info("warmed up in %.1f s", jobs.warm_up())
    else:
        models.get_pipeline(None)
    launch(build_demo(), args.port, args.host)


if __name__ == "__main__":
    main()
