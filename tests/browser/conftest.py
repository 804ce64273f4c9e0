"""Every test here drives Chromium against a launched app (seconds each): all are marked slow as well as browser,
so that `python -m pytest -m "not slow"` is the quick run."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)
