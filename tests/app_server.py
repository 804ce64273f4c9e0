"""Launch the real app (app.py) in this process on a free port, for gradio_client and browser tests.

In-process rather than a subprocess: the embedded model is loaded once per test session (sdedit's loader
caches it), and a failure shows the server's traceback in pytest's output.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.harness import free_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@contextmanager
def running_app() -> Iterator[str]:
    """Yield the URL of a freshly built and launched app; close it afterwards."""
    import app

    demo = app.build_demo()
    app.launch(demo, port=free_port(), host="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url.rstrip("/")
    finally:
        demo.close()
